"""`python -m devstack footprint`: starts the platform, measures each process's resident memory, writes a report.

It reads VmRSS and Pss from /proc for every process the platform started (servers and their children, the dapr CLI,
each daprd and app), after the platform is healthy and again after a short warm-up of sign-ups and logins through the
gateway. RSS counts memory shared between processes once per process (PostgreSQL's shared buffers in each backend);
PSS splits it between them, so the PSS total is what the platform really holds.
"""

import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import httpx

from devstack.layout import Layout
from devstack.platform_run import Platform
from devstack.processes import argv_of, log, platform_part


@dataclass(frozen=True)
class ProcessMemory:
    label: str
    pid: int
    rss_kib: int
    pss_kib: int


def _proc_field(pid: int, name: str) -> str | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(f"{name}:"):
                return line.split(":", 1)[1].strip()
    except OSError:
        return None
    return None


def _pss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except OSError:
        return 0
    return 0


def process_label(pid: int) -> str:
    """What a platform process is, for a report: "daprd (users)", "app users", "redis-server", ..."""
    words = argv_of(pid)
    program = Path(words[0]).name if words else "?"
    match platform_part(words):
        case (app_id, "sidecar"):
            return f"daprd ({app_id})"
        case (app_id, "app"):
            return f"app {app_id}"
    if program == "dapr":
        return "dapr CLI (run -f)"
    return program


def measure(platform: Platform) -> list[ProcessMemory]:
    rows = []
    for pid in platform.processes():
        rss = _proc_field(pid, "VmRSS")
        if rss:
            rows.append(ProcessMemory(process_label(pid), pid, int(rss.split()[0]), _pss_kib(pid)))
    return sorted(rows, key=lambda r: r.label)


def warm_up(gateway_url: str, users: int) -> None:
    with httpx.Client(base_url=gateway_url, timeout=15) as client:
        for _ in range(users):
            email = f"footprint-{uuid.uuid4().hex[:12]}@example.com"
            client.post("/api/v1/users", json={"email": email, "password": "footprint-pw", "name": "F"})
            token = client.post("/api/v1/auth/token", json={"email": email, "password": "footprint-pw"}).json()
            client.get("/api/v1/users/me", headers={"Authorization": f"Bearer {token['access_token']}"})


def table(title: str, rows: list[ProcessMemory]) -> str:
    lines = [f"### {title}", "", "| process | pid | RSS (MiB) | PSS (MiB) |", "|---|---:|---:|---:|"]
    lines += [f"| {r.label} | {r.pid} | {r.rss_kib / 1024:.1f} | {r.pss_kib / 1024:.1f} |" for r in rows]
    rss, pss = sum(r.rss_kib for r in rows) / 1024, sum(r.pss_kib for r in rows) / 1024
    lines.append(f"| **total** | | **{rss:.1f}** | **{pss:.1f}** |")
    return "\n".join(lines)


def run(layout: Layout, profile: str, warm_up_users: int) -> Path:
    started = time.monotonic()
    with Platform(layout, profile=profile) as platform:
        ready_s = time.monotonic() - started
        idle = measure(platform)
        log(f"warming up with {warm_up_users} sign-ups, logins and profile reads")
        warm_up(platform.gateway_url, warm_up_users)
        time.sleep(2)
        warm = measure(platform)
    report = "\n\n".join(
        [
            f"# Platform footprint ({profile} profile)",
            f"Measured {time.strftime('%Y-%m-%d %H:%M:%S %Z')} by `make footprint` (VmRSS and Pss from /proc). "
            f"Platform healthy {ready_s:.1f} s after start (servers, `dapr run -f`, every sidecar and app).",
            table("Idle, just after every app reported healthy", idle),
            table(f"After {warm_up_users} sign-ups + logins + profile reads", warm),
        ]
    )
    out = layout.repo / "reports" / f"footprint-{profile}.md"
    out.parent.mkdir(exist_ok=True)
    out.write_text(report + "\n")
    print(report, flush=True)
    return out
