"""`devstack logs`: every process's log merged in time order, with filters. The sample lines are copied from the
files a real run wrote (.dapr/logs, .run/logs), ids and times changed to tell them apart."""

import argparse
import io
import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from devstack.layout import Layout
from devstack.logs import (
    Filters,
    LogSource,
    Record,
    RecordFilter,
    RecordReader,
    add_arguments,
    follow,
    latest_run,
    log_paths,
    parse_line,
    run,
    since_argument,
)

REQUEST = "cc9d9c6fb00d4c56a07fb80d71d30268"
TRACE = "bc8b2e5c9c908005f19fc58c35b4b145"
OTHER_TRACE = "f9df7a276b0e10f964dbc27defda2b74"


def local_stamp(moment: datetime) -> str:
    """The dapr CLI names its files after the local time."""
    return moment.astimezone().strftime("%Y%m%d%H%M%S")


RUN_STAMP = local_stamp(datetime(2026, 12, 1, 3, 54, 13, tzinfo=UTC))


DAPRD_FIELDS = {
    "app_id": "gateway",
    "instance": "vm",
    "scope": "dapr.runtime.diagnostics",
    "type": "log",
    "ver": "unknown",
}


def app_line(service: str, time: str, event: str, request_id: str | None = None, trace_id: str | None = None) -> str:
    ids = f'"request_id": "{request_id}", ' if request_id else ""
    ids += f'"trace_id": "{trace_id}", "span_id": "9853f88634f9ba40", ' if trace_id else ""
    return (
        f'== APP - {service} == {{"method": "POST", "status": 201, "event": "{event}", "service": "{service}", '
        f'{ids}"level": "info", "logger": "sidecart_kit.service", "timestamp": "2026-12-01T{time}Z"}}'
    )


def logfmt_line(app: str, time: str, msg: str, level: str = "info") -> str:
    return (
        f'time="2026-12-01T{time}Z" level={level} msg="{msg}" app_id={app} instance=vm scope=dapr.runtime '
        "type=log ver=unknown"
    )


def daprd_json_line(app: str, time: str, msg: str, trace_id: str | None = None) -> str:
    trace = f'"trace_id":"{trace_id}",' if trace_id else ""
    return (
        f'{{"app_id":"{app}","instance":"vm","level":"info","msg":"{msg}","scope":"dapr.runtime.http",'
        f'"time":"2026-12-01T{time}Z",{trace}"type":"log","ver":"unknown"}}'
    )


def redis_line(time: str, mark: str, message: str) -> str:
    """Redis writes the local time."""
    local = datetime.fromisoformat(f"2026-12-01T{time}+00:00").astimezone()
    return f"761:M {local.strftime('%d %b %Y %H:%M:%S.%f')[:-3]} {mark} {message}"


def write(path: Path, *lines: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as file:
        file.writelines(f"{line}\n" for line in lines)
    return path


def logs_of(layout: Layout, *argv: str) -> list[str]:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    out = io.StringIO()
    assert run(layout, parser.parse_args(argv), out) == 0
    return out.getvalue().splitlines()


def events(lines: list[str]) -> list[str]:
    """The service and the event of each human line."""
    return [" ".join(line.split()[1:4:2]) for line in lines]


@pytest.fixture
def layout(tmp_path: Path) -> Layout:
    """One run of a sign-up: the gateway logs the request id, users the request and trace ids, users' sidecar (JSON)
    the trace id only; another request's lines and Redis' around them."""
    layout = Layout(repo=tmp_path)
    dapr_logs, run_logs = layout.daprd_logs, layout.run_dir / "logs"
    write(
        dapr_logs / f"gateway_app_{RUN_STAMP}.log",
        app_line("gateway", "03:54:38.129109", "request", REQUEST),
        app_line("gateway", "03:54:38.193066", "other_request", "b8f93dac7e504a48b8e494048f6abdca"),
    )
    write(
        dapr_logs / f"users_app_{RUN_STAMP}.log",
        app_line("users", "03:54:38.123725", "user_registered", REQUEST, TRACE),
        app_line("users", "03:54:38.189833", "token_issued", "b8f93dac7e504a48b8e494048f6abdca", OTHER_TRACE),
    )
    write(
        dapr_logs / f"users_daprd_{RUN_STAMP}.log",
        "Starting Dapr with id users. HTTP Port: 3501. gRPC Port: 50011",
        daprd_json_line("users", "03:54:38.100000", "invoked the app", TRACE),
        daprd_json_line("users", "03:54:38.150000", "invoked the app", OTHER_TRACE),
    )
    write(
        run_logs / "redis.log",
        redis_line("03:54:12.606", "*", "Ready to accept connections"),
        redis_line("03:54:38.126", "#", "Background AOF rewrite terminated with error"),
    )
    write(run_logs / "dapr-run.log", app_line("gateway", "03:54:38.129109", "request", REQUEST))
    return layout


def test_every_file_is_merged_in_time_order_and_dapr_runs_copy_is_left_out(layout: Layout) -> None:
    assert events(logs_of(layout)) == [
        "redis Ready",
        "users-sidecar Starting",  # the CLI's line, without a time, waits for the first line with one
        "users-sidecar invoked",
        "users user_registered",
        "redis Background",
        "gateway request",
        "users-sidecar invoked",
        "users token_issued",
        "gateway other_request",
    ]


def test_a_line_shows_time_service_level_event_and_fields_with_the_ids_last(layout: Layout) -> None:
    line = next(line for line in logs_of(layout) if "user_registered" in line)
    clock = datetime(2026, 12, 1, 3, 54, 38, 123725, UTC).astimezone().strftime("%H:%M:%S.123")
    assert line.split() == [
        clock, "users", "info", "user_registered", "method=POST", "status=201",
        f"request_id={REQUEST}", f"trace_id={TRACE}",
    ]  # fmt: skip


def test_json_output_is_one_object_per_line_with_the_files_own_fields(layout: Layout) -> None:
    records = [json.loads(line) for line in logs_of(layout, "--json", "--service", "gateway")]
    assert records[0] == {
        "time": "2026-12-01T03:54:38.129109+00:00",
        "service": "gateway",
        "level": "info",
        "event": "request",
        "method": "POST",
        "status": 201,
        "request_id": REQUEST,
        "logger": "sidecart_kit.service",
        "file": f"gateway_app_{RUN_STAMP}.log",
    }


def test_trace_keeps_the_lines_of_that_trace_from_apps_and_json_sidecars(layout: Layout) -> None:
    assert events(logs_of(layout, "--trace", TRACE)) == ["users-sidecar invoked", "users user_registered"]


def test_request_brings_in_the_lines_of_the_traces_its_lines_carry(layout: Layout) -> None:
    # The sidecar's line comes first in time and names only the trace: it needs the first pass.
    assert events(logs_of(layout, "--request", REQUEST)) == [
        "users-sidecar invoked",
        "users user_registered",
        "gateway request",
    ]


def test_service_names_an_app_with_its_sidecar_or_only_the_sidecar_or_a_server(layout: Layout) -> None:
    assert {line.split()[1] for line in logs_of(layout, "--service", "users")} == {"users", "users-sidecar"}
    assert {line.split()[1] for line in logs_of(layout, "--service", "users-sidecar", "redis")} == {
        "users-sidecar",
        "redis",
    }


def test_level_keeps_that_level_and_above(layout: Layout) -> None:
    assert events(logs_of(layout, "--level", "warn")) == ["redis Background"]


def test_since_takes_a_time_or_a_duration_back_from_now(layout: Layout) -> None:
    assert events(logs_of(layout, "--since", "2026-12-01T03:54:38.19Z")) == ["gateway other_request"]
    now = datetime(2026, 12, 1, 3, 55, tzinfo=UTC)
    assert since_argument("1h30m", now) == now - timedelta(hours=1, minutes=30)
    assert since_argument("90s", now) == now - timedelta(seconds=90)
    with pytest.raises(argparse.ArgumentTypeError):
        since_argument("yesterday")


def test_only_the_latest_runs_files_and_lines_unless_all_runs(tmp_path: Path) -> None:
    layout = Layout(repo=tmp_path)
    earlier, latest = datetime(2026, 12, 1, 3, 49, 37, tzinfo=UTC), datetime(2026, 12, 1, 3, 54, 13, tzinfo=UTC)
    old = write(
        layout.daprd_logs / f"users_daprd_{local_stamp(earlier)}.log",
        logfmt_line("users", "03:49:38.0", "earlier run"),
    )
    os.utime(old, (earlier.timestamp() + 200, earlier.timestamp() + 200))  # that run's sidecar stopped at 03:52:57
    write(layout.daprd_logs / f"users_daprd_{local_stamp(latest)}.log", logfmt_line("users", "03:54:14.0", "latest"))
    # Redis' file is appended to by every run: its earlier run's lines are left out too.
    write(
        layout.run_dir / "logs" / "redis.log",
        redis_line("03:53:03.918", "#", "Redis is now ready to exit, bye bye..."),
        redis_line("03:54:12.525", "#", "oO0OoO0OoO0Oo Redis is starting oO0OoO0OoO0Oo"),
    )
    assert events(logs_of(layout)) == ["redis oO0OoO0OoO0Oo", "users-sidecar latest"]
    assert events(logs_of(layout, "--all-runs")) == [
        "users-sidecar earlier",
        "redis Redis",
        "redis oO0OoO0OoO0Oo",
        "users-sidecar latest",
    ]


@pytest.mark.parametrize(
    ("line", "time", "level", "event", "fields"),
    [
        (  # daprd as it logs today: logfmt, Go-quoted
            'time="2026-12-01T03:54:13.989588723Z" level=info msg="metric spec: {\\"enabled\\":true}" '
            "app_id=gateway instance=vm scope=dapr.runtime.diagnostics type=log ver=unknown",
            "03:54:13.989588",
            "info",
            'metric spec: {"enabled":true}',
            DAPRD_FIELDS,
        ),
        (  # daprd with --log-as-json (dapr kit's logrus JSONFormatter)
            '{"app_id":"gateway","instance":"vm","level":"warning","msg":"The default value will change",'
            '"scope":"dapr.runtime.diagnostics","time":"2026-12-01T03:54:13.989932759Z","type":"log","ver":"unknown"}',
            "03:54:13.989932",
            "warning",
            "The default value will change",
            DAPRD_FIELDS,
        ),
        (  # a restarted app's file has no CLI prefix
            '{"event": "Finished server process [31909]", "service": "analytics", "level": "info", '
            '"logger": "uvicorn.error", "timestamp": "2026-12-01T03:53:03.118612Z"}',
            "03:53:03.118612",
            "info",
            "Finished server process [31909]",
            {"service": "analytics", "logger": "uvicorn.error"},
        ),
        (  # etcd inside the scheduler
            '{"level":"warn","ts":"2026-12-01T00:47:02.656698Z","caller":"embed/config.go:689",'
            '"msg":"Running http and grpc server on single port."}',
            "00:47:02.656698",
            "warning",
            "Running http and grpc server on single port.",
            {"caller": "embed/config.go:689"},
        ),
        (
            '2026-12-01 00:46:56.056 UTC [18330] LOG:  listening on IPv4 address "127.0.0.1", port 54329',
            "00:46:56.056000",
            "info",
            'listening on IPv4 address "127.0.0.1", port 54329',
            {},
        ),
        (  # Prometheus and its exporters with --log.format=json (go-kit)
            '{"caller":"main.go:1150","level":"info","msg":"Server is ready to receive web requests.",'
            '"ts":"2026-12-01T03:54:20.512Z"}',
            "03:54:20.512000",
            "info",
            "Server is ready to receive web requests.",
            {"caller": "main.go:1150"},
        ),
        (  # Zipkin (Spring Boot's pattern)
            "2026-12-01T03:54:20.512Z  WARN [/] 4321 --- [           main] z.s.ZipkinServer : no storage",
            "03:54:20.512000",
            "warning",
            "[/] 4321 --- [           main] z.s.ZipkinServer : no storage",
            {},
        ),
        (
            "2026-12-01 02:54:29.988836+00:00 [error] <0.223.0> Feature flags: list of feature flags found:",
            "02:54:29.988836",
            "error",
            "<0.223.0> Feature flags: list of feature flags found:",
            {},
        ),
    ],
)
def test_each_format_gives_its_time_level_and_message(
    line: str, time: str, level: str, event: str, fields: dict[str, str]
) -> None:
    parsed = parse_line(line)
    assert parsed.time == datetime.fromisoformat(f"2026-12-01T{time}+00:00")
    assert (parsed.level, parsed.event, parsed.fields) == (level, event, fields)


@pytest.mark.parametrize(
    ("line", "level", "event"),
    [
        (
            "[2026-12-01 03:54:12,562] WARN [QuorumController id=1] Performing controller activation.",
            "warning",
            "[QuorumController id=1] Performing controller activation.",
        ),
        ("761:C 01 Dec 2026 03:54:12.562 * Ready to accept connections", "info", "Ready to accept connections"),
        ("[4321] 2026/12/01 03:54:12.562000 [INF] Server is ready", "info", "Server is ready"),
    ],
)
def test_servers_writing_local_time_are_read_in_local_time(line: str, level: str, event: str) -> None:
    parsed = parse_line(line)
    assert parsed.time == datetime(2026, 12, 1, 3, 54, 12, 562000).astimezone(UTC)
    assert (parsed.level, parsed.event) == (level, event)


def test_a_line_without_a_time_stays_with_the_line_before_it_and_takes_its_level(tmp_path: Path) -> None:
    reader = RecordReader(LogSource(tmp_path / "postgres.log", "postgres", "postgres"))
    lines = [
        '2026-12-01 00:46:56.056 UTC [18330] ERROR:  relation "state" does not exist',
        "2026-12-01 00:46:56.057 UTC [18330] STATEMENT:  SELECT value FROM state",
        "\tWHERE key = $1",
        "2026-12-01 00:46:56 UTC [18330] LOG:  a line stamped to the second after finer ones",
    ]
    records = [record for line in lines for record in reader.feed(line)]
    assert [(record.time.strftime("%S.%f"), record.level) for record in records] == [
        ("56.056000", "error"),
        ("56.057000", "error"),
        ("56.057000", "error"),
        ("56.057000", "info"),  # never back in time within a file
    ]


def test_follow_prints_what_files_gain_and_files_that_appear(layout: Layout) -> None:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    printed: list[str] = []

    def show(record: Record) -> None:
        printed.append(f"{record.service} {record.event}")

    polls = 0

    class StopFollowingError(Exception):
        pass

    def sleep(seconds: float) -> None:
        nonlocal polls
        polls += 1
        if polls == 1:
            write(layout.daprd_logs / f"gateway_app_{RUN_STAMP}.log", app_line("gateway", "03:55:00.0", "later"))
            # A restarted sidecar's file appears; its partial last line waits for its end.
            restarted = write(
                layout.run_dir / "logs" / "users-sidecar-restarted.log", daprd_json_line("users", "03:55:01.0", "back")
            )
            with restarted.open("a") as file:
                file.write(logfmt_line("users", "03:55:02.0", "half"))
        else:
            raise StopFollowingError

    sources = latest_run(log_paths(layout)).sources
    keep = RecordFilter(Filters(services=frozenset({"gateway", "users-sidecar"})))
    with pytest.raises(StopFollowingError):
        follow(layout, sources, keep, show, flush=lambda: None, sleep=sleep)
    assert printed == [
        "users-sidecar Starting Dapr with id users. HTTP Port: 3501. gRPC Port: 50011",
        "users-sidecar invoked the app",
        "gateway request",
        "users-sidecar invoked the app",
        "gateway other_request",
        "gateway later",
        "users-sidecar back",
    ]


def test_a_service_with_no_logs_is_named_rather_than_showing_nothing(
    layout: Layout, capsys: pytest.CaptureFixture[str]
) -> None:
    assert logs_of(layout, "--service", "user") == []
    assert "no logs of user (there are: gateway, redis, users, users-sidecar)" in capsys.readouterr().err
