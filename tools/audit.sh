#!/usr/bin/env bash
# Audits Sidecart's pinned dependencies against the public advisory databases (see SECURITY.md):
#   python  pip-audit on every package uv.lock pins (exported with hashes, so nothing is resolved or installed)
#   go      govulncheck on the Go packages the runtime build compiles: deploy/runtime (our daprd, and dapr's
#           placement, scheduler and sentry) and deploy/runtime/cli (the dapr CLI), so it reports only the
#           advisories whose vulnerable code those binaries can reach.
# Both tools are pinned below and fetched from PyPI and the Go module proxy on first use.
#
# Usage: tools/audit.sh [python] [go]          (no argument: both)
#   PIP_AUDIT_SERVICE=osv|pypi   pip-audit's advisory source (default: pypi, pip-audit's own default)
#   GOVULNDB=<url or file:// dir> govulncheck's database (default: https://vuln.go.dev), e.g. an offline mirror
#
# Exit status: 0 every check ran and reported nothing; 1 a tool reported a vulnerability; 2 a check could not
# complete (advisory database unreachable, a package it could not look up, a tool error). A database that cannot
# be reached is never taken for a clean result.
set -euo pipefail

PIP_AUDIT_VERSION=2.10.1
GOVULNCHECK_VERSION=v1.9.0

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
tools=${XDG_CACHE_HOME:-$HOME/.cache}/sidecart/tools
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

say() { printf '[audit %s] %s\n' "$(date +%H:%M:%S)" "$*"; }

checks=("$@")
[[ ${#checks[@]} -gt 0 ]] || checks=(python go)
for c in "${checks[@]}"; do
  [[ $c == python || $c == go ]] || { echo "usage: $0 [python] [go]" >&2; exit 2; }
done

declare -a summary=()
vulnerable=0
incomplete=0
record() { # record <check> <ok|vulnerable|incomplete> <message>
  summary+=("$(printf '%-28s %-11s %s' "$1" "$2" "$3")")
  case $2 in
    vulnerable) vulnerable=1 ;;
    incomplete) incomplete=1 ;;
  esac
}

unreachable_hint='no such host|name resolution|name or service not known|failed to resolve|dial tcp|connection refused|connection reset|timed out|timeout|max retries exceeded|network is unreachable|tls: |x509: |403 forbidden|404 not found'

# A check that ran but checked nothing: the database was unreachable (its log matches <unreachable>; the last lines
# matching <shown> are printed), or the tool failed (its last lines are printed). Either way: incomplete.
unchecked() { # unchecked <prefix> <check> <tool> <log> <exit code> <unreachable> <shown>
  local prefix=$1 check=$2 tool=$3 log=$4 rc=$5 unreachable=$6 shown=$7
  if grep -qiE "$unreachable" "$log"; then
    say "$prefix: the advisory database could not be reached; $tool said:"
    grep -iE "$shown" "$log" | tail -n 2 | sed 's/^/    /'
    record "$check" incomplete "advisory database unreachable: nothing was checked"
  else
    say "$prefix: $tool failed (exit $rc); its last lines:"
    tail -n 15 "$log" | sed 's/^/    /'
    record "$check" incomplete "$tool failed (exit $rc)"
  fi
}

# --- Python: pip-audit on the locked requirements ------------------------------------------------------------
audit_python() {
  local uv
  if [[ -x "$tools/bin/uv" ]]; then
    uv="$tools/bin/uv"
  elif command -v uv >/dev/null 2>&1; then
    uv=$(command -v uv)
  else
    say "uv is not installed yet: running tools/bootstrap.sh"
    bash "$repo/tools/bootstrap.sh"
    uv="$tools/bin/uv"
  fi
  local req="$work/requirements.txt" report="$work/pip-audit.json" log="$work/pip-audit.log"
  say "python: exporting the locked requirements from uv.lock (all workspace packages and groups, with hashes)"
  (cd "$repo" && "$uv" export --frozen --all-packages --all-groups --no-emit-workspace --format requirements-txt \
    --no-header --quiet -o "$req")
  say "python: pip-audit $PIP_AUDIT_VERSION on the pinned packages (service: ${PIP_AUDIT_SERVICE:-pypi})"
  local rc=0
  "$uv" tool run --quiet --from "pip-audit==$PIP_AUDIT_VERSION" pip-audit -r "$req" --disable-pip \
    --vulnerability-service "${PIP_AUDIT_SERVICE:-pypi}" --format json --output "$report" \
    --progress-spinner off --timeout 20 >"$log" 2>&1 || rc=$?

  if [[ ! -s "$report" ]]; then
    unchecked "python" "python (pip-audit)" "pip-audit" "$log" "$rc" "$unreachable_hint" "$unreachable_hint"
    return 0
  fi

  # The report lists every dependency with its advisories, or a skip_reason when it could not be looked up (this
  # is what an advisory service that answers but knows nothing looks like: every package "not found").
  local verdict
  verdict=$(python3 - "$report" <<'PY'
import json, sys
deps = json.load(open(sys.argv[1]))["dependencies"]
skipped = [d for d in deps if d.get("skip_reason")]
vulns = [(d, v) for d in deps for v in d.get("vulns", [])]
for d, v in vulns:
    fix = ", ".join(v.get("fix_versions") or []) or "no fixed version"
    aliases = ", ".join(v.get("aliases") or [])
    print(f"VULN {d['name']} {d.get('version', '?')}: {v['id']}" + (f" ({aliases})" if aliases else "") + f"; fixed in {fix}")
for d in skipped[:10]:
    print(f"SKIP {d['skip_reason']}")
if len(skipped) > 10:
    print(f"SKIP ... and {len(skipped) - 10} more")
print(f"COUNTS {len(deps)} {len(vulns)} {len(skipped)}")
PY
)
  local total nvulns nskipped
  read -r _ total nvulns nskipped <<<"$(grep '^COUNTS' <<<"$verdict")"
  grep '^VULN' <<<"$verdict" | sed 's/^VULN /    /' || true
  if [[ $nvulns -gt 0 ]]; then
    say "python: $nvulns known vulnerabilities in the locked packages (listed above)"
    record "python (pip-audit)" vulnerable "$nvulns advisories in $total packages"
  fi
  if [[ $total -gt 0 && $nskipped -eq $total ]]; then
    say "python: not one of the $total packages could be looked up: the advisory service is unreachable or answers"
    say "        nothing from this machine (pip-audit itself would have exited $rc, as if all were well). Examples:"
    grep '^SKIP' <<<"$verdict" | head -n 3 | sed 's/^SKIP /    /'
    record "python (pip-audit)" incomplete "advisory database unreachable: all $total packages 'not found'"
  elif [[ $nskipped -gt 0 ]]; then
    say "python: $nskipped of $total packages could not be looked up:"
    grep '^SKIP' <<<"$verdict" | sed 's/^SKIP /    /'
    record "python (pip-audit)" incomplete "$nskipped of $total packages not looked up"
  elif [[ $nvulns -eq 0 ]]; then
    say "python: no known vulnerabilities in the $total locked packages"
    record "python (pip-audit)" ok "$total packages, no known vulnerabilities"
  fi
}

# --- Go: govulncheck on the packages the runtime build compiles ----------------------------------------------
# Source mode on the pinned modules: the call graph decides what is reachable. The daprd build compiles a copy of
# the pinned dapr module with five small fixes (deploy/runtime/build.sh); they import nothing new, so the pinned
# module's source stands for it here.
govulncheck_in() { # govulncheck_in <label> <module dir> <package>...
  local label=$1 dir=$2
  shift 2
  local log="$work/govulncheck-$label.log" rc=0
  local db=()
  [[ -n ${GOVULNDB:-} ]] && db=(-db "$GOVULNDB")
  say "go: govulncheck $GOVULNCHECK_VERSION in ${dir#"$repo"/} on $*"
  (cd "$dir" && CGO_ENABLED=0 "$work/bin/govulncheck" "${db[@]}" "$@") >"$log" 2>&1 || rc=$?
  case $rc in
    0)
      grep -E '^(Your code is affected by|This scan also found|vulnerabilities in modules|these vulnerabilities)' "$log" \
        | sed 's/^/    /' || true
      say "go: $label: no vulnerabilities reachable"
      record "go $label (govulncheck)" ok "no reachable vulnerabilities"
      ;;
    3)
      sed -n '/=== Symbol Results ===/,$p' "$log" | sed 's/^/    /'
      say "go: $label: govulncheck reports reachable vulnerabilities (listed above; more: govulncheck -show verbose)"
      record "go $label (govulncheck)" vulnerable "$(grep -Eo '^Your code is affected by [0-9]+ vulnerabilit(y|ies)' "$log" \
        | sed 's/Your code is affected by //' || echo 'vulnerabilities reported')"
      ;;
    *)
      unchecked "go: $label" "go $label (govulncheck)" "govulncheck" "$log" "$rc" \
        "^govulncheck: fetching vulnerabilities|^govulncheck: .*($unreachable_hint)" '^govulncheck: '
      ;;
  esac
}

audit_go() {
  command -v go >/dev/null 2>&1 || {
    say "go: no Go toolchain (make runtime installs one)"
    record "go (govulncheck)" incomplete "no Go toolchain"
    return 0
  }
  export GOTOOLCHAIN=${GOTOOLCHAIN:-auto}
  say "go: using $(go version); building govulncheck $GOVULNCHECK_VERSION (from the Go module proxy)"
  # Built, not `go run`: `go run` reports every non-zero exit as 1, and govulncheck's 3 (vulnerabilities found)
  # must stay distinct from its 1 (it could not run).
  if ! GOBIN="$work/bin" go install "golang.org/x/vuln/cmd/govulncheck@$GOVULNCHECK_VERSION" >"$work/go-install.log" 2>&1; then
    say "go: could not build govulncheck:"
    tail -n 5 "$work/go-install.log" | sed 's/^/    /'
    record "go (govulncheck)" incomplete "govulncheck could not be built"
    return 0
  fi
  govulncheck_in runtime "$repo/deploy/runtime" ./daprd github.com/dapr/dapr/cmd/placement \
    github.com/dapr/dapr/cmd/scheduler github.com/dapr/dapr/cmd/sentry
  govulncheck_in cli "$repo/deploy/runtime/cli" github.com/dapr/cli
}

for c in "${checks[@]}"; do
  "audit_$c"
done

say "summary:"
printf '    %s\n' "${summary[@]}"
if [[ $vulnerable == 1 ]]; then
  say "FAILED: known vulnerabilities reported (see SECURITY.md for the status of each known advisory)"
  exit 1
elif [[ $incomplete == 1 ]]; then
  say "INCOMPLETE: at least one check could not run to the end; this is not a clean result"
  exit 2
fi
say "OK: no known vulnerabilities"
