#!/usr/bin/env bash
# Builds the Dapr runtime Sidecart runs on, from the Go module proxy alone (no release downloads):
#   daprd (our main in ./daprd with the curated components in ./components), placement, scheduler and sentry
#   from the dapr release pinned in ./go.mod, and the dapr CLI pinned in ./cli/go.mod.
# The binaries land where the dapr CLI looks for them: $DAPR_RUNTIME_PATH/.dapr/bin (default: <repo>/.runtime).
# Rebuilds only when a pin or a source file here changes. Go's module and build caches stay in the user's cache.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
runtime_path=${DAPR_RUNTIME_PATH:-$repo/.runtime}
bin="$runtime_path/.dapr/bin"
cache=${XDG_CACHE_HOME:-$HOME/.cache}/sidecart
stamp="$bin/.sidecart-build"

say() { printf '[runtime %s] %s\n' "$(date +%H:%M:%S)" "$*"; }

# What the binaries are built from: if none of it changed, there is nothing to do.
fingerprint=$(cd "$here" && cat build.sh go.mod go.sum cli/go.mod cli/go.sum daprd/*.go fixes/*.go.in components/*.go | sha256sum | cut -c1-16)
if [[ -f "$stamp" && "$(cat "$stamp")" == "$fingerprint" ]]; then
  all=1
  for b in daprd placement scheduler sentry dapr; do [[ -x "$bin/$b" ]] || all=0; done
  if [[ $all == 1 ]]; then
    say "up to date in $bin"
    exit 0
  fi
fi

# A Go toolchain new enough for the pinned release. An older go (1.21+) fetches the right one itself from the
# module proxy (GOTOOLCHAIN=auto); with no go at all, Debian's bookworm-backports golang-go is the way in.
need_go=$(awk '$1 == "go" {print $2; exit}' "$here/go.mod")
if ! command -v go >/dev/null 2>&1; then
  say "no Go toolchain: installing golang-go from Debian bookworm-backports"
  if [[ ! -f /etc/apt/sources.list.d/sidecart-backports.list ]]; then
    echo "deb http://deb.debian.org/debian bookworm-backports main" >/etc/apt/sources.list.d/sidecart-backports.list
  fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq -t bookworm-backports golang-go >/dev/null
fi
export GOTOOLCHAIN=${GOTOOLCHAIN:-auto}
export CGO_ENABLED=0
# Asked in this folder, go names the toolchain the builds use: go.mod's `toolchain` line (fetched from the module
# proxy when newer than the local go), not the local go.
say "using $(cd "$here" && go version) (go.mod asks for go $need_go or newer; GOTOOLCHAIN=$GOTOOLCHAIN)"

dapr_version=$(cd "$here" && go list -m -f '{{.Version}}' github.com/dapr/dapr)
cli_version=$(cd "$here/cli" && go list -m -f '{{.Version}}' github.com/dapr/cli)
say "pins: dapr runtime $dapr_version, dapr CLI $cli_version"

# Only the modules the builds import are downloaded (by go build, which names each one); the full graph of the
# dapr module (every cloud SDK) is several GB that no curated build needs.
(cd "$here" && go mod download github.com/dapr/dapr)

# dapr's cmd/daprd/components/zz_notag.go panics unless a build tag pulls in every component. We build against
# a copy of the pinned dapr module without that one file, so dapr's own app package runs with our curated set.
# Seven fixes go into the copy too (the "-p7" in its name: the number of fixes), each applied by a checked edit:
# 1. dapr 1.18.2's outbox builds its retry backoff without `Stop`, so once its 10 s are up it retries with no delay,
#    forever. A redelivered internal outbox message whose state is already gone (published and deleted, but its
#    offset not yet committed when a sidecar stopped) then spins a core against the state store and, on Kafka, blocks
#    the topic's partition for good; outboxDiscardWhenMissingState never gets its turn. With Stop, the retry ends
#    after 10 s and the message is discarded.
# 2. The workflow engine counts the work-item streams of the app's workflow worker (the count /v1.0/metadata shows
#    as connectedWorkers, and the one that decides when the workflow actor types are unregistered). When registering
#    the actor types fails as a stream connects (the stream is cancelled, or the actor runtime is not ready or is
#    closing), the connect callback takes its increment back and durabletask-go then runs the disconnect callback,
#    which takes it back again: every such failure leaves the count one lower, for the life of the sidecar. From then
#    on a connected worker reads as 0 (or less), and the types are unregistered while a stream is still connected
#    when the count reaches 0 early. The fix leaves the take-back to the disconnect callback alone.
# 3. When the last work-item stream disconnects (the app died), the engine unregisters the workflow actor types and
#    halts every workflow actor while it holds its registration lock. A workflow turn whose work item was queued
#    while no stream was connected waits for a stream to take it, so the halt never ends; the restarted app's stream
#    then waits for the lock forever, and the sidecar answers "actor type ... not registered" until it is restarted
#    (the wedge dapr fixed after 1.18 with a pending-work tracker, dapr/dapr#10408). The app ids here run one worker
#    per sidecar, so the fix keeps the types registered once a worker has connected: work for a worker that is gone
#    waits in the sidecar until it reconnects, and the restarted worker's stream takes it.
# 4. The outbox sleeps 1 s before it first looks for the state of each internal message (then retries from 500 ms).
#    A broker that delivers one message at a time per partition (Kafka) thereby caps every app's outbox at one event
#    per second: notifications handled order events at exactly 1.0/s, and a backlog left by an earlier run delayed
#    the next run's notices by minutes. The fix looks after 50 ms, then retries from 100 ms (same 10 s limit).
# 5. placement, scheduler and sentry take --healthz-listen-address but never use it: their healthz server listens
#    on every interface. The fix passes the flag's value to the healthz server, so the dev stack keeps it on loopback.
# 6. The outbox wraps each event in a CloudEvent whose traceparent is empty and puts the transaction's trace context
#    in `traceid` alone. A subscriber's sidecar reads traceparent first and takes the empty string for an answer, so
#    every event published through the outbox (a sign-up, an order's outcome) started a new trace in the apps that
#    handle it. The fix passes the trace context as the traceparent as well.
# 7. A circuit breaker counts every error of the operation it guards, and an answer is an error to it when it is a
#    caller's mistake too: an app's 4xx (directmessaging.go makes any answer outside 200-399 a CodeError), a call the
#    callee's access control denied, and a state write that lost its ETag race or first write. A burst of rejected
#    sign-ups, or of stock updates racing for one product, would open the breaker and cut every caller off. The fix
#    lets such answers through the breaker as successes (and still returns them to the caller, unchanged): only
#    outages count (a 5xx, no answer, a timeout, a store or broker that fails).
src="$cache/dapr-src-$dapr_version-p7"
if [[ ! -f "$src/.complete" ]]; then
  say "preparing dapr $dapr_version sources in $src"
  rm -rf "$src"
  mkdir -p "$(dirname "$src")"
  cp -r "$(cd "$here" && go list -m -f '{{.Dir}}' github.com/dapr/dapr)" "$src"
  chmod -R u+w "$src"
  rm "$src/cmd/daprd/components/zz_notag.go"
  outbox="$src/pkg/runtime/pubsub/outbox.go"
  [[ $(grep -c 'RandomizationFactor: 0.1,$' "$outbox") == 1 ]] || { say "outbox.go is not the one the fix is for"; exit 1; }
  sed -i 's/^\(\s*\)RandomizationFactor: 0.1,$/&\n\1Stop:                backoff.Stop,/' "$outbox"
  [[ $(grep -c 'defaultStateScanDelay            = time.Second \* 1$' "$outbox") == 1 ]] \
    && [[ $(grep -c 'InitialInterval:     time.Millisecond \* 500,$' "$outbox") == 1 ]] \
    || { say "outbox.go is not the one the fix is for"; exit 1; }
  sed -i -e 's/defaultStateScanDelay            = time.Second \* 1$/defaultStateScanDelay            = time.Millisecond * 50/' \
    -e 's/InitialInterval:     time.Millisecond \* 500,$/InitialInterval:     time.Millisecond * 100,/' "$outbox"
  envelope='c.outboxPubsub, dataContentType, ceData, "", traceState)'
  [[ $(grep -cF "$envelope" "$outbox") == 1 ]] || { say "outbox.go is not the one the fix is for"; exit 1; }
  sed -i 's/c.outboxPubsub, dataContentType, ceData, "", traceState)$/c.outboxPubsub, dataContentType, ceData, traceID, traceState)/' \
    "$outbox"
  [[ $(grep -cF 'ceData, traceID, traceState)' "$outbox") == 1 ]] || { say "the outbox.go trace edit failed"; exit 1; }
  wfengine="$src/pkg/runtime/wfengine/wfengine.go"
  [[ $(grep -c $'^\t\t\t\t\twfe.getWorkItemsCount.Add(-1)$' "$wfengine") == 1 ]] \
    || { say "wfengine.go is not the one the fix is for"; exit 1; }
  sed -i $'/^\t\t\t\t\twfe.getWorkItemsCount.Add(-1)$/d' "$wfengine"
  unregister=$'\t\t\tif wfe.getWorkItemsCount.Add(-1) == 0 && wfe.mcpRegistrationCount.Load() == 0 && wfe.actorsRegistered {'
  [[ $(grep -cxF "$unregister" "$wfengine") == 1 ]] || { say "wfengine.go is not the one the fix is for"; exit 1; }
  sed -i "s/^\(\t\t\tif wfe.getWorkItemsCount.Add(-1) == 0 .* wfe.actorsRegistered\) {\$/\1 \&\& !keepWorkflowActorsRegistered {/" \
    "$wfengine"
  [[ $(grep -c '&& !keepWorkflowActorsRegistered {$' "$wfengine") == 1 ]] || { say "the wfengine.go edit failed"; exit 1; }
  printf '%s\n' 'package wfengine' '' \
    '// keepWorkflowActorsRegistered: the last worker disconnecting leaves the workflow actor types registered.' \
    'const keepWorkflowActorsRegistered = true' >"$src/pkg/runtime/wfengine/sidecart_keep_registered.go"
  healthz="$src/pkg/healthz/server/server.go"
  [[ $(grep -cxF $'\tPort     int' "$healthz") == 1 && $(grep -cxF $'\tport    int' "$healthz") == 1 ]] \
    && [[ $(grep -cxF $'\t\tport:    opts.Port,' "$healthz") == 1 ]] \
    && [[ $(grep -cF 'net.Listen("tcp", fmt.Sprintf(":%d", s.port))' "$healthz") == 1 ]] \
    || { say "healthz/server/server.go is not the one the fix is for"; exit 1; }
  sed -i -e $'s/^\tPort     int$/&\\n\tListenAddress string/' -e $'s/^\tport    int$/&\\n\tlistenAddress string/' \
    -e $'s/^\t\tport:    opts.Port,$/&\\n\t\tlistenAddress: opts.ListenAddress,/' \
    -e 's/net.Listen("tcp", fmt.Sprintf(":%d", s.port))/net.Listen("tcp", fmt.Sprintf("%s:%d", s.listenAddress, s.port))/' \
    "$healthz"
  for app in placement scheduler sentry; do
    main_go="$src/cmd/$app/app/app.go"
    [[ $(grep -cE $'^\t+Port: +opts.HealthzPort,$' "$main_go") == 1 ]] || { say "$app's app.go is not the one the fix is for"; exit 1; }
    sed -i -E $'s/^(\t+)Port: +opts.HealthzPort,$/&\\n\\1ListenAddress: opts.HealthzListenAddress,/' "$main_go"
  done
  policy="$src/pkg/resiliency/policy.go"
  [[ $(grep -cxF $'\t\t\t\t\treturn operCopy(ctx)' "$policy") == 1 ]] \
    && [[ $(grep -cxF $'\t\t\t\tif def.r != nil && breaker.IsErrorPermanent(err) {' "$policy") == 1 ]] \
    || { say "resiliency/policy.go is not the one the fix is for"; exit 1; }
  sed -i -e $'s/^\t\t\t\t\treturn operCopy(ctx)$/\t\t\t\t\treturn breakerView(operCopy(ctx))/' \
    -e $'s/^\t\t\t\tif def.r != nil \&\& breaker.IsErrorPermanent(err) {$/\t\t\t\tresAny, err = fromBreakerView(resAny, err)\\n&/' \
    "$policy"
  [[ $(grep -c 'fromBreakerView(resAny, err)$' "$policy") == 1 ]] || { say "the resiliency/policy.go edit failed"; exit 1; }
  cp "$here/fixes/resiliency_breaker.go.in" "$src/pkg/resiliency/sidecart_breaker.go"
  invoke="$src/pkg/api/http/directmessaging.go"
  denied=$'\t\t\t\tinvokeErr.statusCode = invokev1.HTTPStatusFromCode(codes.PermissionDenied)'
  [[ $(grep -cxF "$denied" "$invoke") == 1 ]] || { say "api/http/directmessaging.go is not the one the fix is for"; exit 1; }
  sed -i $'s/^\t\t\t\tinvokeErr.statusCode = invokev1.HTTPStatusFromCode(codes.PermissionDenied)$/&\\n\t\t\t\treturn rResp, resiliency.NewCodeError(int32(invokeErr.statusCode), invokeErr) \/\/ a denial, not an outage/' \
    "$invoke"
  [[ $(grep -c 'a denial, not an outage$' "$invoke") == 1 ]] || { say "the directmessaging.go edit failed"; exit 1; }
  echo 'package components' >"$src/cmd/daprd/components/sidecart_curated.go"
  touch "$src/.complete"
fi
modfile_dir="$cache/runtime-modfile-$fingerprint"
mkdir -p "$modfile_dir"
cp "$here/go.mod" "$here/go.sum" "$modfile_dir/"
(cd "$here" && go mod edit -modfile="$modfile_dir/go.mod" -replace "github.com/dapr/dapr=$src")

# `go build -v` names each package as it compiles it; count them so a long build shows it is moving.
progress() {
  local what=$1 n=0 n_dl=0
  while IFS= read -r line; do
    case "$line" in
      "go: downloading "*) n_dl=$((n_dl + 1)); ((n_dl % 50 == 1)) && say "  $what: downloading modules ($n_dl so far)" ;;
      *.go:[0-9]* | "go: "* | "# "*) printf '%s\n' "$line" ;;
      *) n=$((n + 1)); ((n % 100 == 0)) && say "  $what: $n packages compiled" ;;
    esac
  done
  return 0
}

mkdir -p "$bin"
ldflags="-s -w -X github.com/dapr/dapr/pkg/buildinfo.version=${dapr_version#v}"
build() {
  local name=$1 pkg=$2 started=$SECONDS
  say "building $name ($pkg)"
  (cd "$here" && go build -v -modfile="$modfile_dir/go.mod" -trimpath -ldflags "$ldflags" -o "$bin/$name.tmp" "$pkg") 2>&1 \
    | progress "$name"
  mv "$bin/$name.tmp" "$bin/$name"
  say "built $name in $((SECONDS - started)) s"
}
build daprd ./daprd
build placement github.com/dapr/dapr/cmd/placement
build scheduler github.com/dapr/dapr/cmd/scheduler
build sentry github.com/dapr/dapr/cmd/sentry

started=$SECONDS
say "building dapr CLI $cli_version"
(cd "$here/cli" && go build -v -trimpath -ldflags "-s -w -X main.version=${cli_version#v}" -o "$bin/dapr.tmp" github.com/dapr/cli) 2>&1 \
  | progress "dapr CLI"
mv "$bin/dapr.tmp" "$bin/dapr"
say "built dapr CLI in $((SECONDS - started)) s"

rm -rf "$modfile_dir"
echo "$fingerprint" >"$stamp"
say "done: $("$bin/daprd" --version) daprd, $("$bin/dapr" version -o json 2>/dev/null | tr -d '\n' || true) in $bin"
