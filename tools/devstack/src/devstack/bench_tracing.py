"""`python -m devstack bench-tracing`: what tracing costs. The sign-in and order-saga paths of `make bench`, measured
in one run on the platform started three times: every trace recorded (the apps' sampler at 1, the default), none
(0), and the apps' tracing off altogether (no trace endpoint; the sidecars still trace what their callers sample).

The sidecars follow the sampling decision of their caller (`samplingRate: "1"` in their Configuration), so the
apps' sampler (OTEL_TRACES_SAMPLER_ARG; the gateway's decides for every request from a client) is the one knob.
"""

import time
from pathlib import Path

from devstack.bench import (
    RAISED_LIMITS,
    USERS,
    Measured,
    create_accounts,
    measure_http_path,
    measure_sagas,
    settle,
    sign_in_requests,
)
from devstack.layout import Layout
from devstack.load import VEGETA_VERSION, ensure_vegeta
from devstack.platform_run import Platform
from devstack.processes import log

# "off": the apps record nothing at all (no trace endpoint), what the kit's tracing costs when it is not used.
SAMPLING = ("1", "0", "off")


def _measure(layout: Layout, profile: str, sampling: str, vegeta: Path, seconds: float) -> list[Measured]:
    platform = Platform(layout, profile=profile)
    sampler = {"OTEL_EXPORTER_ZIPKIN_ENDPOINT": ""} if sampling == "off" else {"OTEL_TRACES_SAMPLER_ARG": sampling}
    environment = {app.app_id: sampler for app in platform.run_file.apps}
    platform.app_environment = {**environment, "gateway": {**RAISED_LIMITS, **sampler}}
    with platform:
        log(f"sampling {sampling}: creating {USERS} accounts")
        accounts = create_accounts(platform, USERS)
        sign_in = sign_in_requests(platform.gateway_url, accounts)
        settle(platform.processes)
        results = [measure_http_path(vegeta, "sign-in", sign_in, seconds, None, platform.processes)]
        settle(platform.processes)
        results += measure_sagas(platform, seconds)
    return results


def _row(sampling: str, m: Measured) -> str:
    avg, p50, p99 = m.latency_ms or (float("nan"),) * 3
    cpu = m.cpu_total()  # CPU seconds per 1,000 operations: CPU ms per operation
    return f"| {m.name} | {sampling} | {m.throughput:,.1f}/s | {avg:.1f} / {p50:.1f} / {p99:.1f} ms | {cpu:.1f} ms |"


def run(layout: Layout, profile: str, seconds: float) -> Path:
    vegeta = ensure_vegeta()
    measured = {sampling: _measure(layout, profile, sampling, vegeta, seconds) for sampling in SAMPLING}
    lines = [
        f"# What tracing costs ({profile} profile)",
        "",
        f"Measured {time.strftime('%Y-%m-%d %H:%M:%S %Z')} by `make bench-tracing PROFILE={profile}` on this machine "
        f"(2 cores; vegeta {VEGETA_VERSION} on the same cores), the platform started once per sampling with every "
        "app's OTEL_TRACES_SAMPLER_ARG set to it (off: every app's OTEL_EXPORTER_ZIPKIN_ENDPOINT empty, so the apps "
        "record no span). Sign-in: closed loop for the throughput, then open loop at half "
        f"of it for the latencies, {seconds:.0f} s each; order sagas: 10 clients in a closed loop for "
        f"{seconds:.0f} s, latency from 202 to completed. CPU: all of the platform's processes, per operation.",
        "",
        "| path | sampling | throughput | avg / p50 / p99 | CPU per operation |",
        "|---|---:|---:|---:|---:|",
    ]
    for index in range(len(measured[SAMPLING[0]])):
        lines += [_row(sampling, measured[sampling][index]) for sampling in SAMPLING]
    report = layout.repo / "reports" / f"bench-tracing-{profile}.md"
    report.parent.mkdir(exist_ok=True)
    report.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return report
