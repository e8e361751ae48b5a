"""`python -m devstack bench-mtls`: what mTLS between sidecars costs, measured in one run, on and then off.

The platform is started twice on the same profile: as always (sentry, mTLS between sidecars, access policies), then
with mTLS off (no sentry, plaintext between sidecars, no access policies, as they need the mTLS identity). Each time
the same call goes through two sidecars: GET /products on inventory, invoked through the gateway's sidecar with the
gateway's API token (gateway's daprd -> inventory's daprd -> inventory). Printed and written to
reports/bench-mtls-<profile>.md: latency of --calls sequential calls (p50, p99, mean), calls/s with --clients
concurrent clients for --seconds, and the memory (PSS) of the daprds and sentry once the calls are done.
"""

import asyncio
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from devstack.footprint import ProcessMemory, measure
from devstack.layout import Layout
from devstack.measures import percentile
from devstack.platform_run import Platform
from devstack.processes import log

PATH = "/v1.0/invoke/inventory/method/products"


@dataclass(frozen=True)
class ModeResult:
    mtls: bool
    latencies_ms: list[float]
    calls_per_second: float
    memory: list[ProcessMemory]

    def percentile(self, q: float) -> float:
        return percentile(self.latencies_ms, q)

    def pss_mib(self, prefix: str) -> float:
        return sum(m.pss_kib for m in self.memory if m.label.startswith(prefix)) / 1024

    def row(self) -> str:
        return (
            f"| {'on' if self.mtls else 'off'} | {self.percentile(0.5):.2f} | {self.percentile(0.99):.2f} | "
            f"{statistics.fmean(self.latencies_ms):.2f} | {self.calls_per_second:.0f} | {self.pss_mib('daprd'):.1f} | "
            f"{self.pss_mib('sentry'):.1f} | {sum(m.pss_kib for m in self.memory) / 1024:.0f} |"
        )


async def _throughput(platform: Platform, clients: int, seconds: float) -> float:
    done = 0
    until = time.monotonic() + seconds

    async def loop(client: httpx.AsyncClient) -> None:
        nonlocal done
        while time.monotonic() < until:
            (await client.get(PATH)).raise_for_status()
            done += 1

    async with platform.async_sidecar_client("gateway", timeout=30) as client:
        started = time.monotonic()
        await asyncio.gather(*(loop(client) for _ in range(clients)))
        return done / (time.monotonic() - started)


def _measure(layout: Layout, profile: str, mtls: bool, calls: int, clients: int, seconds: float) -> ModeResult:
    log(f"mTLS {'on' if mtls else 'off'}: starting the platform")
    with Platform(layout, profile=profile, mtls=mtls) as platform:
        with platform.sidecar_client("gateway", timeout=30) as client:
            for _ in range(200):  # warm-up: connections, certificates, name resolution
                client.get(PATH).raise_for_status()
            latencies = []
            for _ in range(calls):
                started = time.perf_counter()
                client.get(PATH).raise_for_status()
                latencies.append((time.perf_counter() - started) * 1000)
        rate = asyncio.run(_throughput(platform, clients, seconds))
        time.sleep(1)
        return ModeResult(mtls, latencies, rate, measure(platform))


def run(layout: Layout, profile: str, calls: int, clients: int, seconds: float) -> Path:
    results = [_measure(layout, profile, mtls, calls, clients, seconds) for mtls in (True, False)]
    on, off = results
    report = "\n".join(
        [
            f"# What mTLS costs a call through two sidecars ({profile} profile)",
            "",
            f"Measured {time.strftime('%Y-%m-%d %H:%M:%S %Z')} by `make bench-mtls`: GET /products on inventory through"
            f" the gateway's sidecar ({calls} sequential calls after 200 warm-up calls; then {clients} concurrent"
            f" clients for {seconds:.0f} s). Memory is PSS from /proc after the calls.",
            "",
            "| mTLS | p50 (ms) | p99 (ms) | mean (ms) | calls/s | daprds PSS (MiB) | sentry PSS (MiB) "
            "| platform PSS (MiB) |",
            "|---|---:|---:|---:|---:|---:|---:|---:|",
            *(r.row() for r in results),
            "",
            f"mTLS adds {on.percentile(0.5) - off.percentile(0.5):+.2f} ms at p50, "
            f"{on.percentile(0.99) - off.percentile(0.99):+.2f} ms at p99, "
            f"{(on.calls_per_second / off.calls_per_second - 1) * 100:+.1f} % calls/s, "
            f"{on.pss_mib('daprd') - off.pss_mib('daprd'):+.1f} MiB in the daprds and "
            f"{on.pss_mib('sentry'):.1f} MiB for sentry.",
        ]
    )
    out = layout.repo / "reports" / f"bench-mtls-{profile}.md"
    out.parent.mkdir(exist_ok=True)
    out.write_text(report + "\n")
    print(report, flush=True)
    return out
