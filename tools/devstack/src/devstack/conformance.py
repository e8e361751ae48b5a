"""`python -m devstack conformance`: the end-to-end suite (tests/e2e) once per component profile, then a matrix.

Each profile gets its own platform and its own pytest run with PROFILE set; the JUnit report of each run gives the
per-scenario results and times, and the platform's start time and resident memory (recorded by tests/e2e/conftest.py).
The matrix is printed and written to reports/conformance.md.
"""

import os
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

from devstack.layout import Layout
from devstack.processes import log

# A scenario is a test module of tests/e2e; these are their names in the matrix.
SCENARIOS = {
    "test_sidecars": "pinned daprd, scoped components",
    "test_access_control": "store and topic access control",
    "test_sign_up_journey": "sign-up to notification",
    "test_events": "an event delivered or published again handled once",
    "test_circuit_breakers": "circuit breakers: an app down opens them, then closes; 4xx and denials never do",
    "test_errors": "bad input: clear 4xx",
    "test_order_saga": "order saga: success, compensation, concurrency",
    "test_saga_crash_recovery": "saga survives app and sidecar crashes (12 in a row)",
    "test_telemetry_ingest": "telemetry ingest",
    "test_analytics": "telemetry to reports, redelivery counted once",
    "test_request_ids": "one request id end to end",
    "test_service_shape": "every app the same shape: metrics, ids, errors",
    "test_network_exposure": "every listening socket on loopback",
    "test_rate_limits": "rate limits at the gateway: guessing held back, owner still in",
    "test_zero_trust": "zero trust: who may call what, API tokens, mTLS, secret scopes",
    "test_key_rotation": "signing-key rotation: old tokens stay valid, new ones signed by the next key",
    "test_traces": "one order, one trace: every app and sidecar, saga steps in order, found by its request id",
    "test_metrics": "Prometheus: every target up, orders counted exactly, a killed app down then up",
}
PROFILE_TIMEOUT_S = 20 * 60


@dataclass
class ScenarioResult:
    passed: int = 0
    failed: int = 0
    skipped: int = 0
    seconds: float = 0.0

    def cell(self) -> str:
        ran = self.passed + self.failed
        verdict = "pass" if not self.failed and ran else ("FAIL" if self.failed else "skipped")
        return f"{verdict} {self.passed}/{ran} · {self.seconds:.0f} s"


@dataclass
class ProfileRun:
    profile: str
    exit_code: int
    wall_s: float
    scenarios: dict[str, ScenarioResult] = field(default_factory=dict)
    properties: dict[str, str] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return self.exit_code == 0 and not any(r.failed for r in self.scenarios.values())


def _module(classname: str) -> str:
    """`tests.e2e.test_order_saga` (or `test_order_saga.SomeClass`) -> `test_order_saga`."""
    return next((part for part in classname.split(".") if part.startswith("test_")), classname)


def read_junit(report: Path, run: ProfileRun) -> None:
    root = ET.parse(report).getroot()  # noqa: S314 (the report our own pytest run just wrote)
    for prop in root.iter("property"):
        run.properties[prop.get("name", "")] = prop.get("value", "")
    for case in root.iter("testcase"):
        result = run.scenarios.setdefault(_module(case.get("classname", "")), ScenarioResult())
        result.seconds += float(case.get("time", "0"))
        if case.find("skipped") is not None:
            result.skipped += 1
        elif case.find("failure") is not None or case.find("error") is not None:
            result.failed += 1
        else:
            result.passed += 1


def run_profile(layout: Layout, profile: str) -> ProfileRun:
    report = layout.run_dir / "conformance" / f"{profile}.xml"
    report.parent.mkdir(parents=True, exist_ok=True)
    report.unlink(missing_ok=True)
    log(f"conformance: profile {profile}")
    argv = [sys.executable, "-m", "pytest", "tests/e2e", f"--junitxml={report}", "-o", "junit_duration_report=call"]
    started = time.monotonic()
    try:
        code = subprocess.run(
            argv, cwd=layout.repo, env={**os.environ, "PROFILE": profile}, timeout=PROFILE_TIMEOUT_S, check=False
        ).returncode
    except subprocess.TimeoutExpired:
        log(f"conformance: profile {profile} did not finish within {PROFILE_TIMEOUT_S // 60} min")
        code = -1
    run = ProfileRun(profile, code, time.monotonic() - started)
    if report.exists():
        read_junit(report, run)
    return run


def matrix(runs: list[ProfileRun]) -> str:
    modules = [m for m in SCENARIOS if any(m in r.scenarios for r in runs)]
    modules += sorted({m for r in runs for m in r.scenarios} - set(modules))
    header = "| scenario | " + " | ".join(r.profile for r in runs) + " |"
    lines = [header, "|---|" + "---|" * len(runs)]
    for module in modules:
        cells = [r.scenarios[module].cell() if module in r.scenarios else "not run" for r in runs]
        lines.append(f"| {SCENARIOS.get(module, module)} | " + " | ".join(cells) + " |")
    lines.append("| **suite** | " + " | ".join(("**pass**" if r.passed else "**FAIL**") for r in runs) + " |")
    lines.append("| suite time (incl. start and stop) | " + " | ".join(f"{r.wall_s:.0f} s" for r in runs) + " |")
    for label, prop, unit in (
        ("platform start to healthy", "platform_start_s", "s"),
        ("memory after start (PSS)", "platform_pss_mib", "MiB"),
    ):
        cells = [f"{r.properties[prop]} {unit}" if prop in r.properties else "?" for r in runs]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def run(layout: Layout, profiles: list[str]) -> bool:
    runs = [run_profile(layout, profile) for profile in profiles]
    text = (
        "# Conformance: the end-to-end suite on every component profile\n\n"
        f"Measured {time.strftime('%Y-%m-%d %H:%M:%S %Z')} with `make conformance` (tests/e2e once per profile; "
        "each cell: tests passed / run, and the time of the tests themselves). Memory: PSS summed over every process "
        "of the platform (servers, placement, scheduler, dapr CLI, daprds, apps) right after it reported healthy.\n\n"
        + matrix(runs)
        + "\n"
    )
    out = layout.repo / "reports" / "conformance.md"
    out.parent.mkdir(exist_ok=True)
    out.write_text(text)
    print(text, flush=True)
    log(f"report written to {out}")
    return all(r.passed for r in runs)
