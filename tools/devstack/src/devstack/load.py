"""Load from a second process, open or closed loop, with vegeta (a pinned Go module built into the user's cache).

Open loop (`rate` > 0): vegeta sends at that rate whether or not earlier answers came back, so a slow answer cannot
hold back the next request and hide itself (no coordinated omission). Closed loop (`rate` = 0): `workers` requests
in flight at all times, for the throughput at saturation.
"""

import base64
import json
import os
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from devstack.layout import user_cache
from devstack.processes import log

VEGETA_MODULE = "github.com/tsenart/vegeta/v12"
VEGETA_VERSION = "v12.13.0"


def ensure_go_tool(module: str, version: str, binary: str) -> Path:
    """A Go command at a pinned version, built once from the Go module proxy into the user's cache (the runtime
    build has already made sure a Go toolchain is there)."""
    folder = user_cache() / "tools" / f"{binary}-{version}"
    path = folder / binary
    if path.exists():
        return path
    log(f"building {binary} {version} from the Go module proxy (one time, about 10 s)")
    env = {**os.environ, "GOBIN": str(folder), "GOFLAGS": "-modcacherw", "CGO_ENABLED": "0"}
    subprocess.run(["go", "install", f"{module}@{version}"], env=env, check=True)
    return path


def ensure_vegeta() -> Path:
    return ensure_go_tool(VEGETA_MODULE, VEGETA_VERSION, "vegeta")


@dataclass(frozen=True)
class Request:
    method: str
    url: str
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""

    def as_target(self) -> str:
        """One line of vegeta's JSON target format."""
        target: dict[str, object] = {
            "method": self.method,
            "url": self.url,
            "header": {name: [value] for name, value in self.headers.items()},
        }
        if self.body:
            target["body"] = base64.b64encode(self.body).decode()
        return json.dumps(target)


@dataclass(frozen=True)
class LoadResult:
    rate: int  # asked for, per second; 0 = closed loop
    requests: int
    seconds: float
    throughput: float  # successful answers per second
    mean_ms: float
    p50_ms: float
    p99_ms: float
    success: float
    status_codes: dict[str, int]
    errors: list[str]

    @classmethod
    def of_report(cls, rate: int, report: dict[str, Any]) -> "LoadResult":
        """From `vegeta report -type=json` (durations in nanoseconds)."""
        latencies = report["latencies"]
        return cls(
            rate=rate,
            requests=int(report["requests"]),
            seconds=report["duration"] / 1e9,
            throughput=float(report["throughput"]),
            mean_ms=latencies["mean"] / 1e6,
            p50_ms=latencies["50th"] / 1e6,
            p99_ms=latencies["99th"] / 1e6,
            success=float(report["success"]),
            status_codes={str(code): int(count) for code, count in (report.get("status_codes") or {}).items()},
            errors=[str(error) for error in report.get("errors") or []][:5],
        )

    @property
    def statuses(self) -> str:
        return ", ".join(f"{count} x {code}" for code, count in sorted(self.status_codes.items()))


def attack(
    vegeta: Path,
    requests: Sequence[Request],
    rate: int,
    seconds: float,
    workers: int = 32,
    local_address: str | None = None,
) -> LoadResult:
    """Sends `requests` round robin for `seconds`: at `rate` per second, or closed loop with `workers` when 0; from
    `local_address` (a loopback address of its own, so the gateway sees a client of its own) when given."""
    with tempfile.NamedTemporaryFile("w", suffix=".jsonl", prefix="targets-") as targets:
        targets.write("\n".join(r.as_target() for r in requests) + "\n")
        targets.flush()
        argv = [
            str(vegeta), "attack", "-format=json", f"-targets={targets.name}", f"-rate={rate}",
            f"-duration={seconds}s", "-timeout=30s", "-keepalive=true",
        ]  # fmt: skip
        argv += [f"-max-workers={workers}", f"-workers={workers}"] if rate == 0 else []
        argv += [f"-laddr={local_address}"] if local_address else []
        attacked = subprocess.run(argv, capture_output=True, check=True)
    reported = subprocess.run(
        [str(vegeta), "report", "-type=json"], input=attacked.stdout, capture_output=True, check=True
    )
    return LoadResult.of_report(rate, json.loads(reported.stdout))
