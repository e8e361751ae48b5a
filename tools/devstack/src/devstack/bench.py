"""`python -m devstack bench` (`make bench`): the seed's load table on this platform, service by service, in one run.

First the floor: a one-route FastAPI app, served the way every service is (the kit's `serve`), behind two daprds
(caller's daprd -> app's daprd -> app), with no application code: what a call through two sidecars costs at best.
Then the platform as it runs (tokens, mTLS, access control on), each service path in turn:
- HTTP paths (profile read, sign-in, analytics reports), with vegeta from a second process: throughput at
  saturation (closed loop, 32 in flight) and avg/p50/p99 at a fixed arrival rate (open loop: the target's rate where
  the issue names one, else half the saturation throughput);
- order sagas (10 clients, 202 -> completed) and telemetry (batches through the gateway, then end to end into
  analytics), with the closed-loop drivers of `make bench-saga` and `make bench-ingest`.
For each: CPU seconds per 1,000 requests (or sagas, or events) per process, from /proc, and the platform's memory
(PSS) idle and after the run. Writes reports/bench-<profile>.md and three PNG plots beside it, and prints the table.

The gateway's rate limits are raised for the run (every client here is 127.0.0.1, and the sign-in path would
otherwise be held at 10 logins per account per minute): the report says so.
"""

import asyncio
import json
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

from devstack import bench_ingest, bench_notifications, bench_saga
from devstack.footprint import ProcessMemory, measure, process_label
from devstack.layout import Layout
from devstack.load import VEGETA_VERSION, LoadResult, Request, attack, ensure_vegeta
from devstack.platform_run import Platform
from devstack.processes import ManagedProcess, cpu_seconds, log, port_open, wait_until

USERS = 50
CLOSED_LOOP_WORKERS = 32
PASSWORD = "bench-password"  # noqa: S105 (the bench's own throwaway accounts)
RAISED_LIMITS = {
    "GATEWAY_RATE_LIMIT_PER_ADDRESS": "1000000/second",
    "GATEWAY_RATE_LIMIT_PER_USER": "1000000/second",
    "GATEWAY_LOGIN_LIMIT_PER_ACCOUNT_AND_ADDRESS": "1000000/second",
    "GATEWAY_LOGIN_LIMIT_PER_ADDRESS": "1000000/second",
}

# The seed's design table, and the targets the performance issue sets (2 cores, generator on the same machine).
SEED = {
    "floor": ("", ""),
    "profile read": ("User 2,500 req/s, avg 45 / p99 120 ms", "≥ 1,000 req/s; p99 ≤ 50 ms at 500 req/s"),
    "sign-in": ("(part of User)", ""),
    "analytics reports": ("Analytics 1,200 req/s, 150 / 400 ms", "≥ 1,200 req/s, p99 ≤ 100 ms"),
    "order sagas (10 clients)": ("", "≥ 30/s, p99 202→completed ≤ 1 s"),
    "telemetry, accepted": ("Data Processing 10,000 req/s", "≥ 10,000 events/s"),
    "telemetry, end to end": ("", "≥ 10,000 events/s, p99 freshness ≤ 2 s"),
    "notifications, event → notice": ("Notification 5,000 req/s, 8 / 25 ms", "≥ 2,000 events/s, p99 ≤ 100 ms"),
}

# The targets' throughputs, drawn on the plot.
TARGET_THROUGHPUT = {
    "profile read": 1000,
    "analytics reports": 1200,
    "order sagas (10 clients)": 30,
    "telemetry, accepted": 10_000,
    "telemetry, end to end": 10_000,
    "notifications, event → notice": 2000,
}

FLOOR_APP = """
from fastapi import FastAPI
from sidecart_kit.service import serve
from sidecart_kit.sidecar import ServiceSettings


def create_app(settings: ServiceSettings) -> FastAPI:
    app = FastAPI()

    @app.get("/items/{item_id}")
    async def item(item_id: str) -> dict[str, str]:
        return {"id": item_id}

    return app


serve(create_app, ServiceSettings(app_port=PORT))
"""

FLOOR_CONFIG = """apiVersion: dapr.io/v1alpha1
kind: Configuration
metadata:
  name: floor
spec:
  tracing:
    samplingRate: "1"
  metrics:
    enabled: true
  nameResolution:
    component: sqlite
    configuration:
      connectionString: {names}
"""
FLOOR_APP_PORT = 8593
FLOOR_SIDECARS = {"floor-caller": (3591, 50591, 50592, 9591), "floor": (3593, 50593, 50594, 9593)}


@dataclass
class Measured:
    """One line of the table: a service path's figures."""

    name: str
    unit: str  # what is counted: req, sagas, events
    throughput: float = float("nan")  # per second, at saturation
    fixed: LoadResult | None = None
    latency_ms: tuple[float, float, float] | None = None  # avg, p50, p99 (closed-loop paths: of their own units)
    cpu_per_1000: dict[str, float] = field(default_factory=dict)  # process -> CPU seconds per 1,000 units
    note: str = ""
    arrival: str = ""  # how the load arrived, when not at `fixed`'s rate: "closed loop", "2,000/s (open loop)"

    def cpu_total(self) -> float:
        return sum(self.cpu_per_1000.values())


class CpuMeter:
    """CPU seconds each process used while `measuring()`, by process label (a process started meanwhile counts
    from its start)."""

    def __init__(self, pids: Callable[[], list[int]]):
        self._pids = pids
        self._before: dict[int, tuple[str, float]] = {}
        self.used: dict[str, float] = {}

    def _sample(self) -> dict[int, tuple[str, float]]:
        sample = {}
        for pid in self._pids():
            used = cpu_seconds(pid)
            if used is not None:
                sample[pid] = (process_label(pid), used)
        return sample

    @contextmanager
    def measuring(self) -> Iterator["CpuMeter"]:
        self._before = self._sample()
        yield self
        after = self._sample()
        self.used = {}
        for pid, (label, used) in after.items():
            spent = used - self._before.get(pid, (label, 0.0))[1]
            self.used[label] = self.used.get(label, 0.0) + spent

    def per_1000(self, units: float) -> dict[str, float]:
        return {label: used / units * 1000 for label, used in self.used.items() if units and used > 0}


def settle(pids: Callable[[], list[int]], quiet_cores: float = 0.15, limit_s: float = 180) -> float:
    """Waits until the platform is quiet (all its processes together under `quiet_cores` for two seconds running),
    so a path is not measured while subscribers still work off what an earlier path sent. Returns the seconds
    waited; gives up after `limit_s` and says so."""
    started = time.monotonic()
    quiet_seconds = 0
    while quiet_seconds < 2:
        meter = CpuMeter(pids)
        with meter.measuring():
            time.sleep(1)
        quiet_seconds = quiet_seconds + 1 if sum(meter.used.values()) < quiet_cores else 0
        if time.monotonic() - started > limit_s:
            log(f"the platform is still busy after {limit_s:.0f} s ({sum(meter.used.values()):.2f} cores): measuring")
            break
    waited = time.monotonic() - started
    if waited > 5:
        log(f"the platform was quiet after {waited:.0f} s")
    return waited


def measure_http_path(
    vegeta: Path,
    name: str,
    requests: list[Request],
    seconds: float,
    fixed_rate: int | None,
    pids: Callable[[], list[int]],
) -> Measured:
    log(f"{name}: warm-up, then {seconds:.0f} s closed loop ({CLOSED_LOOP_WORKERS} in flight)")
    attack(vegeta, requests, rate=50, seconds=3)
    settle(pids)
    meter = CpuMeter(pids)
    with meter.measuring():
        saturated = attack(vegeta, requests, rate=0, seconds=seconds, workers=CLOSED_LOOP_WORKERS)
    rate = fixed_rate or max(10, int(saturated.throughput / 2))
    log(f"{name}: {saturated.throughput:.0f}/s at saturation; {seconds:.0f} s open loop at {rate}/s")
    fixed = attack(vegeta, requests, rate=rate, seconds=seconds)
    ok = saturated.requests * saturated.success
    note = "" if saturated.success == 1 and fixed.success == 1 else f"answers: {saturated.statuses}; {fixed.statuses}"
    return Measured(
        name,
        "req",
        throughput=saturated.throughput,
        fixed=fixed,
        latency_ms=(fixed.mean_ms, fixed.p50_ms, fixed.p99_ms),
        cpu_per_1000=meter.per_1000(ok),
        note=note,
    )


@contextmanager
def _floor_stack(layout: Layout, work: Path) -> Iterator[list[int]]:
    """The trivial app behind two daprds (caller's and its own); yields their pids."""
    for port in (FLOOR_APP_PORT, *(p for ports in FLOOR_SIDECARS.values() for p in ports)):
        if port_open(port):
            raise RuntimeError(f"port {port} is in use: is a benchmark already running?")
    (work / "components").mkdir()
    (work / "config.yaml").write_text(FLOOR_CONFIG.format(names=work / "names.db"))
    (work / "floor_app.py").write_text(FLOOR_APP.replace("PORT", str(FLOOR_APP_PORT)))
    processes = [ManagedProcess("floor app", [sys.executable, "floor_app.py"], work / "app.log", cwd=work)]
    for app_id, (http, grpc, internal, metrics) in FLOOR_SIDECARS.items():
        argv = [
            str(layout.runtime_bin / "daprd"), "--app-id", app_id, "--dapr-listen-addresses", "127.0.0.1",
            "--dapr-http-port", str(http), "--dapr-grpc-port", str(grpc), "--dapr-internal-grpc-port", str(internal),
            "--metrics-port", str(metrics), "--config", str(work / "config.yaml"),
            "--resources-path", str(work / "components"), "--log-level", "warn",
        ]  # fmt: skip
        if app_id == "floor":
            argv += ["--app-port", str(FLOOR_APP_PORT), "--app-protocol", "http"]
        processes.append(ManagedProcess(f"daprd {app_id}", argv, work / f"{app_id}.log", cwd=work))
    try:
        for process in processes:
            process.start()
        caller = FLOOR_SIDECARS["floor-caller"][0]
        url = f"http://127.0.0.1:{caller}/v1.0/invoke/floor/method/items/A-1"

        def answers() -> bool:
            try:
                return httpx.get(url, timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        wait_until("the floor app through two daprds", answers, 60)
        yield [p.pid for p in processes if p.pid is not None]
    finally:
        for process in reversed(processes):
            process.stop()


def measure_floor(layout: Layout, vegeta: Path, seconds: float, fixed_rate: int) -> Measured:
    with tempfile.TemporaryDirectory(prefix="bench-floor-") as tmp, _floor_stack(layout, Path(tmp)) as pids:
        url = f"http://127.0.0.1:{FLOOR_SIDECARS['floor-caller'][0]}/v1.0/invoke/floor/method/items/A-1"
        measured = measure_http_path(vegeta, "floor", [Request("GET", url)], seconds, fixed_rate, lambda: pids)
    # The floor's processes are labelled by the platform's rules; name them as what they stand for.
    measured.cpu_per_1000 = {
        label.replace("daprd (floor-caller)", "daprd (caller)").replace("daprd (floor)", "daprd (callee)"): v
        for label, v in measured.cpu_per_1000.items()
    }
    return measured


def create_accounts(platform: Platform, count: int) -> list[tuple[str, str]]:
    """`count` new accounts: (e-mail, access token) each."""
    accounts = []
    with httpx.Client(base_url=platform.gateway_url, timeout=30) as client:
        for _ in range(count):
            email = f"bench-{uuid.uuid4().hex[:12]}@example.com"
            client.post(
                "/api/v1/users", json={"email": email, "password": PASSWORD, "name": "Bench"}
            ).raise_for_status()
            token = client.post("/api/v1/auth/token", json={"email": email, "password": PASSWORD})
            token.raise_for_status()
            accounts.append((email, token.json()["access_token"]))
    return accounts


def sign_in_requests(gateway: str, accounts: list[tuple[str, str]]) -> list[Request]:
    """A token request per account, as its user's client would send it."""
    return [
        Request(
            "POST",
            f"{gateway}/api/v1/auth/token",
            {"content-type": "application/json"},
            json.dumps({"email": email, "password": PASSWORD}).encode(),
        )
        for email, _ in accounts
    ]


def measure_platform(
    layout: Layout, profile: str, vegeta: Path, seconds: float
) -> tuple[list[Measured], list[list[ProcessMemory]]]:
    key = json.loads((layout.run_dir / "secrets" / "secrets.json").read_text())["ingest-api-keys"].split(",")[0]
    with Platform(layout, profile=profile, app_environment={"gateway": RAISED_LIMITS}) as platform:
        idle = measure(platform)
        log(f"creating {USERS} accounts")
        accounts = create_accounts(platform, USERS)
        gateway = platform.gateway_url
        bearer = [{"Authorization": f"Bearer {token}"} for _, token in accounts]
        now = datetime.now(UTC).replace(microsecond=0)
        last_ten_minutes = (
            f"type=page_view&from={now - timedelta(minutes=10):%Y-%m-%dT%H:%M:%SZ}&to={now:%Y-%m-%dT%H:%M:%SZ}"
        )
        reports = ["summary", "top-products", "funnel", f"timeseries?{last_ten_minutes}"]
        http_paths = [
            ("profile read", [Request("GET", f"{gateway}/api/v1/users/me", h) for h in bearer], 500),
            ("sign-in", sign_in_requests(gateway, accounts), None),
            (
                "analytics reports",
                [Request("GET", f"{gateway}/api/v1/analytics/{r}", h) for h in bearer for r in reports],
                None,
            ),
        ]
        results = [
            measure_http_path(vegeta, n, reqs, seconds, rate, platform.processes) for n, reqs, rate in http_paths
        ]
        # Telemetry last: analytics may take long to fold what it accepted, and would be busy under later paths.
        for measure_path in (measure_sagas, _notices):
            settle(platform.processes)
            results += measure_path(platform, seconds)
        settle(platform.processes)
        results += _telemetry(platform, key, seconds)
        time.sleep(2)
        busy = measure(platform)
    return results, [idle, busy]


def measure_sagas(platform: Platform, seconds: float) -> list[Measured]:
    log(f"order sagas: 10 clients for {seconds:.0f} s")
    meter = CpuMeter(platform.processes)
    with meter.measuring():
        (level,) = asyncio.run(bench_saga.bench(platform, [10], seconds))
    latencies = level.latencies_ms
    mean = sum(latencies) / len(latencies) if latencies else float("nan")
    return [
        Measured(
            "order sagas (10 clients)",
            "sagas",
            arrival="closed loop",
            throughput=level.per_second,
            latency_ms=(mean, level.percentile(0.5), level.percentile(0.99)),
            cpu_per_1000=meter.per_1000(level.completed),
            note=f"closed loop; 202→completed; {level.cancelled} cancelled, {level.errors} errors",
        )
    ]


def _notices(platform: Platform, seconds: float, rate: int = 2000) -> list[Measured]:
    log(f"notifications: user.registered at {rate}/s for {seconds:.0f} s (open loop), until every notice is recorded")
    meter = CpuMeter(platform.processes)
    with meter.measuring():
        result = asyncio.run(bench_notifications.bench(platform, rate, seconds))
    latencies = result.latencies_ms()
    caught_up = result.recorded >= result.published
    return [
        Measured(
            "notifications, event → notice",
            "events",
            arrival=f"{rate:,}/s (open loop)",
            throughput=result.recorded / result.seconds,
            latency_ms=(sum(latencies) / len(latencies), result.percentile(0.5), result.percentile(0.99))
            if latencies
            else None,
            cpu_per_1000=meter.per_1000(result.recorded),
            note=f"{result.published:,} published; latency: publish until recorded"
            + ("" if caught_up else f"; {result.published - result.recorded:,} not recorded after the catch-up limit"),
        )
    ]


def _telemetry(platform: Platform, key: str, seconds: float) -> list[Measured]:
    log(f"telemetry: 4 clients posting batches of 1,000 for {seconds:.0f} s, then until analytics caught up")
    meter = CpuMeter(platform.processes)
    with meter.measuring():
        result = asyncio.run(bench_ingest.bench(platform, key, 4, 1000, seconds))
    batch_latencies = result.latencies_ms
    fresh = result.freshness_ms()
    accepted = Measured(
        "telemetry, accepted",
        "events",
        arrival="closed loop",
        throughput=result.accepted / result.seconds,
        latency_ms=(
            sum(batch_latencies) / len(batch_latencies) if batch_latencies else float("nan"),
            result.percentile(0.5),
            result.percentile(0.99),
        ),
        note=f"closed loop, 4 clients x batches of 1,000; latency is a batch's; {result.errors} errors",
    )
    end_to_end = Measured(
        "telemetry, end to end",
        "events",
        arrival="closed loop",
        throughput=result.accepted / result.caught_up_s if result.caught_up_s else float("nan"),
        latency_ms=(sum(fresh) / len(fresh), fresh[len(fresh) // 2], fresh[int(0.99 * (len(fresh) - 1))])
        if fresh
        else None,
        cpu_per_1000=meter.per_1000(result.accepted),
        note="latency is freshness: a batch's 202 until analytics' summary counted it"
        if result.caught_up_s
        else f"analytics had not caught up {bench_ingest.CATCH_UP_LIMIT_S} s after the posting ended",
    )
    return [accepted, end_to_end]


def _figure(value: float, digits: int = 0) -> str:
    return "-" if value != value else f"{value:,.{digits}f}"  # nan: not measured


def _row(m: Measured, floor: Measured) -> str:
    seed, target = SEED.get(m.name, ("", ""))
    at = f"{m.fixed.rate:,}/s" if m.fixed else m.arrival
    latency = " / ".join(_figure(v, 1) for v in m.latency_ms) if m.latency_ms else "-"
    ratio = f"{m.throughput / floor.throughput:.0%}" if m.unit == "req" and m.name != "floor" else ""
    cpu = f"{m.cpu_total():.2f}" if m.cpu_per_1000 else "-"
    return (
        f"| {m.name} | {seed} | {target} | {_figure(m.throughput)} {m.unit}/s | {ratio} | {at} | {latency} "
        f"| {cpu} | {m.note} |"
    )


def summary_table(results: list[Measured]) -> str:
    floor = results[0]
    return "\n".join(
        [
            "| path | seed's design | target | throughput at saturation | of the floor | fixed rate "
            "| avg / p50 / p99 (ms) | CPU s per 1,000 (all processes) | notes |",
            "|---|---|---|---:|---:|---:|---:|---:|---|",
            *(_row(m, floor) for m in results),
        ]
    )


def busy_processes(measured: list[Measured], min_share: float) -> list[str]:
    """The processes that take at least `min_share` of some path's CPU; the rest sum into "everything else"."""
    labels = sorted({label for m in measured for label in m.cpu_per_1000})
    return [
        label for label in labels if any(m.cpu_per_1000.get(label, 0) >= min_share * m.cpu_total() for m in measured)
    ]


def everything_else(m: Measured, busy: list[str]) -> float:
    return sum(v for k, v in m.cpu_per_1000.items() if k not in busy)


def cpu_table(results: list[Measured]) -> str:
    measured = [m for m in results if m.cpu_per_1000]
    busy = busy_processes(measured, 0.02)
    lines = [
        "| process | " + " | ".join(f"{m.name} (per 1,000 {m.unit})" for m in measured) + " |",
        "|---|" + "---:|" * len(measured),
    ]
    for label in busy:
        lines.append(f"| {label} | " + " | ".join(f"{m.cpu_per_1000.get(label, 0):.3f}" for m in measured) + " |")
    lines.append("| everything else | " + " | ".join(f"{everything_else(m, busy):.3f}" for m in measured) + " |")
    lines.append("| **total** | " + " | ".join(f"**{m.cpu_total():.3f}**" for m in measured) + " |")
    return "\n".join(lines)


def plot(results: list[Measured], folder: Path, profile: str) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    written = []
    measured = [m for m in results if m.throughput == m.throughput]
    http = [m for m in measured if m.unit == "req"]
    others = [m for m in measured if m.unit != "req"]
    figure, axes = plt.subplots(1, 2, figsize=(13, 4.5))
    for axis, paths, unit in ((axes[0], http, "requests/s"), (axes[1], others, "sagas/s or events/s (log scale)")):
        names = [m.name for m in paths]
        axis.barh(names, [m.throughput for m in paths], color="tab:blue", label="measured")
        targets = [(m.name, TARGET_THROUGHPUT[m.name]) for m in paths if m.name in TARGET_THROUGHPUT]
        axis.scatter(
            [t for _, t in targets], [n for n, _ in targets], marker="|", s=400, color="tab:red", label="target"
        )
        for m in paths:
            axis.annotate(f" {m.throughput:,.0f}", (m.throughput, m.name), va="center", fontsize="small")
        axis.set_xlabel(f"{unit} at saturation")
        axis.legend(loc="best", fontsize="small")
    axes[1].set_xscale("log")
    figure.suptitle(f"Throughput ({profile} profile; 2 cores, load generator on the same machine)")
    figure.tight_layout()
    written.append(folder / f"bench-{profile}-throughput.png")
    figure.savefig(written[-1], dpi=100)

    timed = [m for m in measured if m.latency_ms]
    figure, axis = plt.subplots(figsize=(12, 4.5))
    names = [f"{m.name}\n@ {m.fixed.rate:,}/s" if m.fixed else f"{m.name}\n{m.arrival}" for m in timed]
    positions = list(range(len(timed)))
    p50 = [m.latency_ms[1] if m.latency_ms else 0.0 for m in timed]
    p99 = [m.latency_ms[2] if m.latency_ms else 0.0 for m in timed]
    axis.bar([x - 0.2 for x in positions], p50, 0.4, label="p50")
    axis.bar([x + 0.2 for x in positions], p99, 0.4, label="p99")
    axis.set_xticks(positions, names, fontsize="small")
    axis.set_yscale("log")
    axis.set_ylabel("ms (log scale)")
    axis.set_title("Latency: HTTP paths at a fixed rate; sagas 202→completed; events publish→counted")
    axis.legend()
    figure.tight_layout()
    written.append(folder / f"bench-{profile}-latency.png")
    figure.savefig(written[-1], dpi=100)

    costed = [m for m in results if m.cpu_per_1000]
    shown = busy_processes(costed, 0.04)
    figure, axis = plt.subplots(figsize=(13, 5))
    palette = plt.get_cmap("tab20")
    colors = [palette(n) for n in range(20)]
    lefts = [0.0] * len(costed)
    rows = [f"{m.name}\n{m.cpu_total():.2f} s per 1,000 {m.unit}" for m in costed]
    for n, label in enumerate([*shown, "everything else"]):
        shares = [
            100 * (m.cpu_per_1000.get(label, 0.0) if label in shown else everything_else(m, shown)) / m.cpu_total()
            for m in costed
        ]
        axis.barh(rows, shares, left=lefts, color=colors[n % len(colors)], label=label)
        lefts = [a + b for a, b in zip(lefts, shares, strict=True)]
    axis.set_xlabel("share of the CPU spent on each path, by process (%)")
    axis.legend(fontsize="small", bbox_to_anchor=(1.01, 1), loc="upper left")
    axis.invert_yaxis()
    figure.tight_layout()
    written.append(folder / f"bench-{profile}-cpu.png")
    figure.savefig(written[-1], dpi=100)
    plt.close("all")
    return written


def _pss_mib(rows: list[ProcessMemory]) -> float:
    return sum(r.pss_kib for r in rows) / 1024


def run(layout: Layout, profile: str, seconds: float) -> Path:
    vegeta = ensure_vegeta()
    log(f"the floor: a one-route app behind two daprds ({seconds:.0f} s per load)")
    floor = measure_floor(layout, vegeta, seconds, fixed_rate=500)
    results, (idle, busy) = measure_platform(layout, profile, vegeta, seconds)
    results.insert(0, floor)
    folder = layout.repo / "reports"
    folder.mkdir(exist_ok=True)
    plots = plot(results, folder, profile)
    text = "\n".join(
        [
            f"# Sidecart under load ({profile} profile)",
            "",
            f"Measured {time.strftime('%Y-%m-%d %H:%M:%S %Z')} by `make bench PROFILE={profile}` on this machine "
            f"(2 cores; the load generator, vegeta {VEGETA_VERSION}, runs on the same cores). "
            f"HTTP paths: {seconds:.0f} s closed loop with {CLOSED_LOOP_WORKERS} requests in flight for the "
            f"throughput, then {seconds:.0f} s open loop "
            "at the fixed rate for the latencies. The platform runs as always (API tokens, mTLS, access control), "
            "with the gateway's rate limits raised for the run. The floor is a one-route FastAPI app served like "
            "every service, behind two daprds (mTLS off, no application code). Before each path the bench waits "
            "until the platform is quiet. The stores hold what earlier runs left in .run/ (`make clean` empties it).",
            "",
            summary_table(results),
            "",
            f"Memory (PSS, all processes): {_pss_mib(idle):,.0f} MiB idle, {_pss_mib(busy):,.0f} MiB after the run "
            "(seed's design: 2.5 GB in all; target ≤ 1.0 GB idle, ≤ 1.5 GB under load).",
            "",
            "## CPU seconds per 1,000 requests, sagas or events, per process",
            "",
            "(the figures of the closed-loop run; the floor's two daprds are its caller's and its callee's)",
            "",
            cpu_table(results),
            "",
            "## Memory",
            "",
            _memory_table(idle, busy),
            "",
            "## Plots",
            "",
            *(f"![{p.stem}]({p.name})" for p in plots),
            "",
        ]
    )
    out = folder / f"bench-{profile}.md"
    out.write_text(text)
    print(text, flush=True)
    return out


def _memory_table(idle: list[ProcessMemory], busy: list[ProcessMemory]) -> str:
    after = {r.label: r for r in busy}
    lines = ["| process | PSS idle (MiB) | PSS after the run (MiB) |", "|---|---:|---:|"]
    for row in idle:
        later = after.get(row.label)
        lines.append(f"| {row.label} | {row.pss_kib / 1024:.1f} | {later.pss_kib / 1024 if later else 0:.1f} |")
    lines.append(f"| **total** | **{_pss_mib(idle):.1f}** | **{_pss_mib(busy):.1f}** |")
    return "\n".join(lines)
