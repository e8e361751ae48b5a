"""What the benchmarks send to vegeta and how they read its report; and the CPU each process spent."""

import base64
import json
import os
import time
from pathlib import Path

import pytest

from devstack.bench import CpuMeter, Measured, cpu_table, plot, summary_table
from devstack.load import LoadResult, Request

# `vegeta report -type=json` of a 1 s attack at 50/s (vegeta v12.13.0); latencies and duration are in nanoseconds.
REPORT = {
    "latencies": {
        "total": 40037467,
        "mean": 800749,
        "50th": 769888,
        "90th": 1005196,
        "95th": 1202641,
        "99th": 1376222,
        "max": 1376222,
        "min": 527782,
    },
    "bytes_in": {"total": 750, "mean": 15},
    "bytes_out": {"total": 0, "mean": 0},
    "duration": 979937557,
    "wait": 792701,
    "requests": 50,
    "rate": 51.023659255464175,
    "throughput": 48.5,
    "success": 0.98,
    "status_codes": {"200": 49, "429": 1},
    "errors": ["429 Too Many Requests"],
}


def test_a_target_carries_method_url_every_header_and_the_body_in_base64() -> None:
    body = json.dumps({"email": "a@example.com", "password": "pw"}).encode()
    target = json.loads(
        Request(
            "POST", "http://127.0.0.1:8080/api/v1/auth/token", {"content-type": "application/json"}, body
        ).as_target()
    )
    assert target["method"] == "POST"
    assert target["url"] == "http://127.0.0.1:8080/api/v1/auth/token"
    assert target["header"] == {"content-type": ["application/json"]}
    assert base64.b64decode(target["body"]) == body


def test_a_target_without_a_body_has_none() -> None:
    assert "body" not in json.loads(Request("GET", "http://127.0.0.1:1/x").as_target())


def test_the_report_is_read_in_milliseconds_and_successes_per_second() -> None:
    result = LoadResult.of_report(50, REPORT)
    assert result.requests == 50
    assert round(result.seconds, 3) == 0.980
    assert result.throughput == 48.5
    assert (round(result.mean_ms, 3), round(result.p50_ms, 3), round(result.p99_ms, 3)) == (0.801, 0.770, 1.376)
    assert result.success == 0.98
    assert result.statuses == "49 x 200, 1 x 429"
    assert result.errors == ["429 Too Many Requests"]


def test_the_cpu_meter_sees_the_cpu_a_process_spends_and_divides_it_per_thousand() -> None:
    meter = CpuMeter(lambda: [os.getpid()])
    with meter.measuring():
        started = time.process_time()
        while time.process_time() - started < 0.2:
            pass
    (label,) = meter.used
    assert meter.used[label] >= 0.15
    assert meter.per_1000(100)[label] == pytest.approx(meter.used[label] * 10)


def test_the_tables_put_each_path_beside_the_floor_and_sum_every_process() -> None:
    floor = Measured("floor", "req", throughput=2000.0, cpu_per_1000={"daprd (caller)": 0.3, "daprd (callee)": 0.3})
    read = Measured(
        "profile read",
        "req",
        throughput=500.0,
        latency_ms=(10.0, 8.0, 30.0),
        cpu_per_1000={"app gateway": 1.0, "app users": 0.9, "redis-server": 0.001},
    )
    summary = summary_table([floor, read])
    assert "| profile read |" in summary
    assert "| 500 req/s | 25% |" in summary
    assert "10.0 / 8.0 / 30.0" in summary
    cpu = cpu_table([floor, read])
    assert "| app gateway | 0.000 | 1.000 |" in cpu
    # Under 2 % of every path's total, a process is summed into one line instead of a line of its own.
    assert "redis-server" not in cpu
    assert "| everything else | 0.000 | 0.001 |" in cpu
    assert "| **total** | **0.600** | **1.901** |" in cpu


def test_the_plots_are_written_as_png(tmp_path: Path) -> None:
    floor = Measured(
        "floor", "req", throughput=3000.0, latency_ms=(1.0, 0.9, 2.4), cpu_per_1000={"daprd (caller)": 0.3}
    )
    read = Measured(
        "profile read", "req", throughput=500.0, latency_ms=(10.0, 8.0, 30.0), cpu_per_1000={"app gateway": 1.2}
    )
    sagas = Measured(
        "order sagas (10 clients)", "sagas", throughput=15.0, latency_ms=(385.0, 385.0, 595.0), cpu_per_1000={"x": 1.0}
    )
    not_measured = Measured("notifications, event → notice", "events")

    written = plot([floor, read, sagas, not_measured], tmp_path, "local")

    assert [p.name for p in written] == ["bench-local-throughput.png", "bench-local-latency.png", "bench-local-cpu.png"]
    assert all(p.read_bytes().startswith(b"\x89PNG") for p in written)
