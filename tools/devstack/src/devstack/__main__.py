"""`python -m devstack <command>`: what `make setup`, `make run`, `make conformance`, `make logs` and the benchmarks
call."""

import argparse
import os
import signal
import sys
import threading

from devstack import conformance, logs, prometheus, zipkin
from devstack.bench import run as run_bench
from devstack.bench_ingest import run as run_bench_ingest
from devstack.bench_kit import run as run_bench_kit
from devstack.bench_login_burst import run as run_bench_login_burst
from devstack.bench_mtls import run as run_bench_mtls
from devstack.bench_saga import run as run_bench_saga
from devstack.bench_tracing import run as run_bench_tracing
from devstack.catalogue import generate
from devstack.footprint import run as run_footprint
from devstack.keys import rotate as rotate_keys
from devstack.layout import Layout
from devstack.platform_run import Platform
from devstack.processes import log
from devstack.profiles import DEFAULT_PROFILE, available_profiles, install


def main(argv: list[str] | None = None) -> int:
    # Every command works on one component profile (PROFILE, default local) but conformance, which takes a list.
    on_profile = argparse.ArgumentParser(add_help=False)
    on_profile.add_argument(
        "--profile", default=os.environ.get("PROFILE", DEFAULT_PROFILE), help="folder under components/"
    )
    parser = argparse.ArgumentParser(prog="devstack", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser(
        "setup", parents=[on_profile], help="install the profile's servers, build the Dapr runtime, make the secrets"
    )
    run = sub.add_parser("run", parents=[on_profile], help="start the whole platform until Ctrl-C")
    run.add_argument("--gateway-port", type=int, default=int(os.environ.get("GATEWAY_PORT", "8080")))
    check = sub.add_parser("conformance", help="the end-to-end suite on each profile, then a scenario x profile matrix")
    check.add_argument(
        "--profiles", default=os.environ.get("PROFILES", ""), help="space- or comma-separated (default: every profile)"
    )
    footprint = sub.add_parser(
        "footprint", parents=[on_profile], help="start the platform, measure each process's memory, write a report"
    )
    footprint.add_argument("--warm-up-users", type=int, default=50)
    table = sub.add_parser(
        "bench", parents=[on_profile], help="the seed's load table, service by service, beside the floor (reports/)"
    )
    table.add_argument("--seconds", type=float, default=10, help="per load (closed loop, then open loop)")
    bench = sub.add_parser(
        "bench-saga", parents=[on_profile], help="order sagas/s and latency at 1, 10 and 50 concurrent clients"
    )
    bench.add_argument("--clients", default="1,10,50", help="comma-separated concurrency levels")
    bench.add_argument("--seconds", type=float, default=20)
    ingest = sub.add_parser(
        "bench-ingest", parents=[on_profile], help="telemetry events accepted per second through the gateway"
    )
    ingest.add_argument("--clients", default="1,4", help="comma-separated concurrency levels")
    ingest.add_argument("--batch", type=int, default=1000)
    ingest.add_argument("--seconds", type=float, default=20)
    burst = sub.add_parser(
        "bench-login-burst", parents=[on_profile], help="bystanders' latency while one account's password is guessed"
    )
    burst.add_argument(
        "--attackers", type=int, default=int(os.environ.get("ATTACKERS", "1")), help="connections, each a tight loop"
    )
    burst.add_argument("--bystander-rate", type=int, default=50, help="profile reads per second, all bystanders")
    burst.add_argument("--seconds", type=float, default=10)
    mtls = sub.add_parser(
        "bench-mtls", parents=[on_profile], help="a call through two sidecars with mTLS on and off: latency, memory"
    )
    mtls.add_argument("--calls", type=int, default=2000, help="sequential calls timed")
    mtls.add_argument("--clients", type=int, default=10, help="concurrent clients for the calls/s figure")
    mtls.add_argument("--seconds", type=float, default=10)
    sub.add_parser(
        "rotate-keys", help="JWT signing keys: previous <- current <- next <- a new key; says what must restart"
    )
    sub.add_parser("generate", help="write dapr.yaml and each app's Dapr Configuration from deploy/catalogue.yaml")
    trace = sub.add_parser("trace", help="one trace from the running Zipkin, as a tree of its spans")
    trace.add_argument("trace_id")
    tracing = sub.add_parser(
        "bench-tracing", parents=[on_profile], help="sign-in and order sagas with every trace recorded, and none"
    )
    tracing.add_argument("--seconds", type=float, default=20)
    sub.add_parser(
        "bench-kit", help="the kit's hot path: a call to a real daprd per client, a request per server stack"
    )
    logs.add_arguments(
        sub.add_parser("logs", help="every app's, sidecar's and server's log merged in time order, with filters")
    )
    args = parser.parse_args(argv)
    # A one-shot command (a bench, say) stops what it started on SIGTERM as on Ctrl-C: the exception unwinds its
    # `with Platform(...)`. Both are set explicitly: a shell starts background jobs with SIGINT ignored.
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, _interrupt)

    layout = Layout.discover()
    if args.command == "logs":
        return logs.run(layout, args)
    if args.command == "trace":
        return zipkin.print_trace(args.trace_id)
    if args.command == "generate":
        written = generate(layout)
        log(f"wrote {', '.join(str(p.relative_to(layout.repo)) for p in written)}" if written else "up to date")
        return 0
    if args.command == "rotate-keys":
        rotate_keys(layout)
        return 0
    if args.command == "bench-kit":
        install(layout, [])
        run_bench_kit(layout)
        return 0
    if args.command == "conformance":
        profiles = args.profiles.replace(",", " ").split() or available_profiles(layout)
        install(layout, profiles)
        return 0 if conformance.run(layout, profiles) else 1

    install(layout, [args.profile])
    if args.command == "setup":
        return 0
    if args.command == "bench":
        log(f"report written to {run_bench(layout, args.profile, args.seconds)}")
        return 0
    if args.command == "bench-saga":
        levels = [int(n) for n in args.clients.split(",")]
        log(f"report written to {run_bench_saga(layout, args.profile, levels, args.seconds)}")
        return 0
    if args.command == "bench-ingest":
        levels = [int(n) for n in args.clients.split(",")]
        log(f"report written to {run_bench_ingest(layout, args.profile, levels, args.batch, args.seconds)}")
        return 0
    if args.command == "bench-login-burst":
        report = run_bench_login_burst(layout, args.profile, args.attackers, args.seconds, args.bystander_rate)
        log(f"report written to {report}")
        return 0
    if args.command == "bench-mtls":
        log(f"report written to {run_bench_mtls(layout, args.profile, args.calls, args.clients, args.seconds)}")
        return 0
    if args.command == "bench-tracing":
        log(f"report written to {run_bench_tracing(layout, args.profile, args.seconds)}")
        return 0
    if args.command == "footprint":
        log(f"report written to {run_footprint(layout, args.profile, args.warm_up_users)}")
        return 0

    stop = threading.Event()
    # Both handled explicitly: a shell starts background jobs with SIGINT ignored, and Ctrl-C must still work.
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    with Platform(layout, profile=args.profile, gateway_port=args.gateway_port) as platform:
        log(f"Sidecart is up: gateway at {platform.gateway_url} (profile {args.profile}). Ctrl-C stops everything.")
        log(f"  traces:  http://127.0.0.1:{zipkin.port()}/zipkin/ (Zipkin; API at /api/v2/)")
        log(f"  metrics: {prometheus.url()}/classic/targets (Prometheus; alerts at /classic/alerts)")
        log("  logs:    make logs REQUEST=<an X-Request-ID> (or TRACE=, SERVICE=, LEVEL=, SINCE=, FOLLOW=1)")
        stop.wait()
    log("stopped")
    return 0


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(signal.Signals(signum).name)


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt as interrupted:
        log(f"stopped ({interrupted or 'SIGINT'}); everything it started is stopped")
        sys.exit(130)
