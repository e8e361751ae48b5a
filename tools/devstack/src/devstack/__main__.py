"""`python -m devstack setup | run`: what `make setup` and `make run` call."""

import argparse
import os
import signal
import sys
import threading

from devstack.bench_ingest import run as run_bench_ingest
from devstack.bench_saga import run as run_bench_saga
from devstack.footprint import run as run_footprint
from devstack.install import setup
from devstack.layout import Layout
from devstack.platform_run import Platform
from devstack.processes import log


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="devstack", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("setup", help="install Redis, build the Dapr runtime, make the JWT signing key (idempotent)")
    run = sub.add_parser("run", help="start the whole platform until Ctrl-C")
    run.add_argument("--profile", default=os.environ.get("PROFILE", "local"), help="folder under components/")
    run.add_argument("--gateway-port", type=int, default=int(os.environ.get("GATEWAY_PORT", "8080")))
    footprint = sub.add_parser("footprint", help="start the platform, measure each process's memory, write a report")
    footprint.add_argument("--profile", default=os.environ.get("PROFILE", "local"))
    footprint.add_argument("--warm-up-users", type=int, default=50)
    bench = sub.add_parser("bench-saga", help="order sagas/s and latency at 1, 10 and 50 concurrent clients")
    bench.add_argument("--clients", default="1,10,50", help="comma-separated concurrency levels")
    bench.add_argument("--seconds", type=float, default=20)
    ingest = sub.add_parser("bench-ingest", help="telemetry events accepted per second through the gateway")
    ingest.add_argument("--clients", default="1,4", help="comma-separated concurrency levels")
    ingest.add_argument("--batch", type=int, default=1000)
    ingest.add_argument("--seconds", type=float, default=20)
    args = parser.parse_args(argv)

    layout = Layout.discover()
    setup(layout)
    if args.command == "setup":
        return 0
    if args.command == "bench-saga":
        levels = [int(n) for n in args.clients.split(",")]
        log(f"report written to {run_bench_saga(layout, levels, args.seconds)}")
        return 0
    if args.command == "bench-ingest":
        levels = [int(n) for n in args.clients.split(",")]
        log(f"report written to {run_bench_ingest(layout, levels, args.batch, args.seconds)}")
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
        stop.wait()
    log("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
