"""`python -m devstack logs`: every app's, sidecar's and server's log merged into one stream in time order, with
filters, so that one request can be followed across all processes without opening a file per process.

Each process writes its own file in its own format: the apps structlog JSON behind the dapr CLI's `== APP - x == `
prefix, daprd logfmt or JSON, the servers their own. Every line becomes a `Record`; a line whose time cannot be
read (a stack trace, a message of the dapr CLI) takes the time of the line before it, so it stays beside it.
"""

import argparse
import heapq
import json
import os
import re
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from datetime import time as clock_time
from pathlib import Path
from typing import Any, TextIO

from devstack.layout import Layout

POLL_SECONDS = 0.5
# dapr run's own copy of every app line (it logs to file and console): the app files have them already.
DUPLICATE_LOGS = frozenset({"dapr-run.log"})
# The servers start a few seconds before the apps (RabbitMQ up to 7 s): a minute before the first app's file keeps
# their start-up lines in "the latest run".
SERVERS_LEAD = timedelta(minutes=1)

LEVELS = ("debug", "info", "warning", "error", "critical")
LEVEL_ALIASES = {
    "trace": "debug",
    "trc": "debug",
    "dbg": "debug",
    "verbose": "debug",
    "inf": "info",
    "information": "info",
    "notice": "info",
    "log": "info",  # PostgreSQL's ordinary messages
    "warn": "warning",
    "wrn": "warning",
    "err": "error",
    "fatal": "critical",
    "ftl": "critical",
    "panic": "critical",
    "crit": "critical",
}
TIME_KEYS = ("timestamp", "time", "ts")
EVENT_KEYS = ("event", "msg", "message")
TRACE_ID_KEYS = ("trace_id", "traceId", "traceid")
# Said on every line of a file already (its service), or too long for a terminal and of no use for finding lines.
HIDDEN_FIELDS = frozenset({"service", "app_id", "instance", "type", "ver", "logger", "caller", "span_id"})
ID_FIELDS = ("request_id", "trace_id")

DAPR_RUN_FILE = re.compile(r"(?P<app>.+)_(?P<kind>app|daprd)_(?P<stamp>\d{14})\.log")
RESTARTED_FILE = re.compile(r"(?P<app>.+)-(?P<part>app|sidecar)-restarted\.log")
APP_PREFIX = re.compile(r"^== APP - [^=]+ == ")
LOGFMT_START = re.compile(r"[\w.@-]+=")
LOGFMT_PAIR = re.compile(r'([\w.@-]+)=("(?:[^"\\]|\\.)*"|\S*)')
REDIS_LINE = re.compile(
    r"\d+:[XCSM] (?P<time>\d{2} [A-Z][a-z]{2} \d{4} \d{2}:\d{2}:\d{2}\.\d{3}) (?P<mark>[.*#-]) (?P<message>.*)"
)
REDIS_LEVELS = {".": "debug", "-": "debug", "*": "info", "#": "warning"}
# Kafka `[2026-12-01 00:47:00,562] WARN …`, PostgreSQL `2026-12-01 00:46:56.056 UTC [18330] LOG:  …`, RabbitMQ
# `2026-12-01 02:54:29.988836+00:00 [info] <0.223.0> …`, NATS `[4321] 2026/12/01 00:47:00.123456 [INF] …`.
LEADING_TIME = re.compile(
    r"(?:\[\d+\] )?\[?(?P<date>\d{4}[-/]\d{2}[-/]\d{2})[T ](?P<clock>\d{2}:\d{2}:\d{2})(?:[.,](?P<fraction>\d+))?"
    r"(?P<zone>Z| ?UTC|[+-]\d{2}:?\d{2})?\]?\s*(?P<rest>.*)"
)
LEADING_LEVEL = re.compile(r"(?:\[\d+\]\s+)?\[?(?P<level>[A-Za-z]+\d?)\]?:?\s+")
POSTGRES_CONTINUATIONS = frozenset({"DETAIL", "HINT", "STATEMENT", "CONTEXT", "QUERY", "LOCATION"})
DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
DURATION_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}


@dataclass(frozen=True)
class LogSource:
    path: Path
    service: str  # shown on each of its lines: an app id, "<app>-sidecar", or a server's name
    app: str  # whose it is: `--service orders` brings orders' sidecar too


@dataclass(frozen=True)
class ParsedLine:
    time: datetime | None
    level: str | None
    event: str
    fields: dict[str, Any]
    # Part of the line before it, as PostgreSQL's DETAIL of an ERROR is: it takes that line's level.
    continues: bool = False


@dataclass(frozen=True)
class Record:
    time: datetime
    service: str
    app: str
    level: str
    event: str
    fields: dict[str, Any]
    file: str

    @property
    def request_id(self) -> str | None:
        value = self.fields.get("request_id")
        return value if isinstance(value, str) else None

    @property
    def trace_id(self) -> str | None:
        for key in TRACE_ID_KEYS:
            if isinstance(value := self.fields.get(key), str) and value:
                return value
        return None


# --- which files -----------------------------------------------------------------------------------------------


def log_paths(layout: Layout) -> list[Path]:
    """The files `Platform.log_files()` lists (reading logs needs no Platform, nor a profile), but dapr run's copy."""
    paths = {*layout.daprd_logs.glob("*.log"), *(layout.run_dir / "logs").glob("*.log")}
    return sorted(path for path in paths if path.name not in DUPLICATE_LOGS)


def source_of(path: Path) -> LogSource:
    for pattern, kind in ((DAPR_RUN_FILE, "kind"), (RESTARTED_FILE, "part")):
        if match := pattern.fullmatch(path.name):
            app = match["app"]
            return LogSource(path, app if match[kind] == "app" else f"{app}-sidecar", app)
    return LogSource(path, path.stem, path.stem)


@dataclass(frozen=True)
class Selection:
    sources: list[LogSource]
    # The servers' and restarted processes' files are appended to by every run: their lines before this are older.
    not_before: datetime | None


def every_run(paths: Sequence[Path]) -> Selection:
    return Selection([source_of(path) for path in paths], None)


def latest_run(paths: Sequence[Path]) -> Selection:
    """The newest dapr run file of each app and kind (the CLI starts new ones each run), and every other file from
    a little before that run began: after the previous run's files were last written, and at most SERVERS_LEAD
    before the first app started."""
    newest: dict[tuple[str, str], Path] = {}
    for path in paths:
        if match := DAPR_RUN_FILE.fullmatch(path.name):
            key = (match["app"], match["kind"])
            # The stamp has a fixed width, so the greatest name of an app and kind is its newest file.
            newest[key] = max(newest.get(key, path), path, key=lambda candidate: candidate.name)
    latest = set(newest.values())
    older = [path for path in paths if DAPR_RUN_FILE.fullmatch(path.name) and path not in latest]
    chosen = [path for path in paths if path in latest or not DAPR_RUN_FILE.fullmatch(path.name)]
    return Selection([source_of(path) for path in chosen], run_began(latest, older))


def run_began(latest: Iterable[Path], older: Iterable[Path]) -> datetime | None:
    previous_end = max((modified_at(path) for path in older), default=None)
    # An app gone from dapr.yaml keeps an old "newest" file: it says nothing of when the latest run began.
    starts = [start for start in map(stamp_time, latest) if previous_end is None or start > previous_end]
    if not starts:
        return previous_end
    servers_start = min(starts) - SERVERS_LEAD
    return servers_start if previous_end is None else max(servers_start, previous_end)


def stamp_time(path: Path) -> datetime:
    """The dapr CLI stamps each file's name with its local time (Go's time.Now())."""
    match = DAPR_RUN_FILE.fullmatch(path.name)
    assert match, path
    return datetime.strptime(match["stamp"], "%Y%m%d%H%M%S").astimezone(UTC)


def modified_at(path: Path) -> datetime:
    return datetime.fromtimestamp(path.stat().st_mtime, UTC)


# --- one line ----------------------------------------------------------------------------------------------------


def parse_line(line: str) -> ParsedLine:
    """Whatever the format, the line's time, level, message and fields; time None when it has none to read."""
    text = APP_PREFIX.sub("", line, count=1)
    parsed = None
    if text.startswith("{"):
        parsed = parse_json(text)
    elif LOGFMT_START.match(text):
        parsed = parse_logfmt(text)
    return parsed or parse_redis(text) or parse_leading_time(text) or ParsedLine(None, None, text, {})


def parse_json(text: str) -> ParsedLine | None:
    """structlog's lines, daprd's with --log-as-json, etcd's inside the scheduler."""
    try:
        fields = json.loads(text)
    except ValueError:
        return None
    return from_fields(fields) if isinstance(fields, dict) else None


def parse_logfmt(text: str) -> ParsedLine | None:
    """daprd's, placement's and scheduler's `time="…" level=info msg="…" scope=…`; Prometheus' `ts=… level=…`."""
    fields = {key: unquote(value) for key, value in LOGFMT_PAIR.findall(text)}
    # A sentence with an '=' in it is not logfmt: logfmt says when it was written.
    return from_fields(fields) if any(key in fields for key in TIME_KEYS) else None


def from_fields(fields: dict[str, Any]) -> ParsedLine:
    moment = next((parse_time(fields.pop(key)) for key in TIME_KEYS if key in fields), None)
    level = fields.pop("level", None)
    event = next((fields.pop(key) for key in EVENT_KEYS if key in fields), "")
    return ParsedLine(moment, normal_level(level) if isinstance(level, str) else None, str(event), fields)


def unquote(value: str) -> str:
    """A Go-quoted logfmt value; Go's escapes are JSON's but for a few (\\x, \\a, \\v) a daprd message rarely has."""
    if not value.startswith('"'):
        return value
    try:
        return str(json.loads(value))
    except ValueError:
        return value[1:-1]


def parse_redis(text: str) -> ParsedLine | None:
    """`761:M 01 Dec 2026 03:55:57.841 * message`: local time, and a mark for the level."""
    if not (match := REDIS_LINE.fullmatch(text)):
        return None
    moment = datetime.strptime(match["time"], "%d %b %Y %H:%M:%S.%f").astimezone(UTC)
    return ParsedLine(moment, REDIS_LEVELS[match["mark"]], match["message"], {})


def parse_leading_time(text: str) -> ParsedLine | None:
    if not (match := LEADING_TIME.fullmatch(text)):
        return None
    fraction = (match["fraction"] or "0")[:6]
    zone = (match["zone"] or "").strip().replace("UTC", "+00:00").replace("Z", "+00:00")
    written = f"{match['date'].replace('/', '-')}T{match['clock']}.{fraction}{zone}"
    try:
        moment = as_utc(datetime.fromisoformat(written))
    except ValueError:
        return None
    rest = match["rest"]
    if not (level_match := LEADING_LEVEL.match(rest)):
        return ParsedLine(moment, None, rest, {})
    word, message = level_match["level"], rest[level_match.end() :]
    if word in POSTGRES_CONTINUATIONS:
        return ParsedLine(moment, None, message, {}, continues=True)
    if level := normal_level(word):
        return ParsedLine(moment, level, message, {})
    return ParsedLine(moment, None, rest, {})


def parse_time(value: object) -> datetime | None:
    try:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return datetime.fromtimestamp(value, UTC)  # zap's epoch seconds
        if isinstance(value, str):
            return as_utc(datetime.fromisoformat(value))
    except (ValueError, OverflowError, OSError):
        pass  # not a time after all: the line takes the time of the line before it
    return None


def as_utc(moment: datetime) -> datetime:
    """A time without a zone is the machine's local time: that is how the servers that omit it write it."""
    return moment.astimezone(UTC)


def normal_level(word: str) -> str | None:
    word = word.lower()
    if word in LEVELS:
        return word
    if word.startswith("debug"):
        return "debug"  # PostgreSQL's DEBUG1 to DEBUG5
    return LEVEL_ALIASES.get(word)


# --- one file ----------------------------------------------------------------------------------------------------


class RecordReader:
    """Turns one file's lines into records. A line with no time of its own takes the time and level of the line
    before it (a traceback after an error stays an error); lines before the first timed one (the dapr CLI's
    `Starting Dapr with id …`) wait for it. A timed line that names no level is info."""

    def __init__(self, source: LogSource, worth_reading: Callable[[str], bool] = lambda line: True):
        self.source = source
        self.worth_reading = worth_reading
        self._time: datetime | None = None
        self._level = "info"
        self._waiting: list[ParsedLine] = []

    def feed(self, line: str) -> list[Record]:
        line = line.rstrip("\r\n")
        if not line.strip() or not self.worth_reading(line):
            return []
        parsed = parse_line(line)
        if parsed.time is None and self._time is None:
            self._waiting.append(parsed)
            return []
        if parsed.time is not None:
            # Never back in time within a file: the merge needs each file in order, and a line stamped to the
            # second (Go's standard logger in the scheduler's file) after one stamped to the microsecond is later.
            self._time = max(parsed.time, self._time or parsed.time)
        return [*self._release_waiting(), self._record(parsed)]

    def flush(self, fallback: datetime) -> list[Record]:
        """Lines still waiting for a time (the file has none after them) take the fallback, its modification time."""
        self._time = self._time or fallback
        return self._release_waiting()

    def _release_waiting(self) -> list[Record]:
        released = [self._record(parsed) for parsed in self._waiting]
        self._waiting.clear()
        return released

    def _record(self, parsed: ParsedLine) -> Record:
        assert self._time is not None
        if parsed.level:
            self._level = parsed.level
        elif not (parsed.time is None or parsed.continues):
            self._level = "info"
        source = self.source
        return Record(
            self._time, source.service, source.app, self._level, parsed.event, parsed.fields, source.path.name
        )


def read_records(source: LogSource, worth_reading: Callable[[str], bool] = lambda line: True) -> Iterator[Record]:
    reader = RecordReader(source, worth_reading)
    try:
        with source.path.open(encoding="utf-8", errors="replace") as lines:
            for line in lines:
                yield from reader.feed(line)
        yield from reader.flush(modified_at(source.path))
    except FileNotFoundError:
        return  # removed since it was listed (make clean)


class FileTail:
    """What a file gained since the last read, whole lines only."""

    def __init__(self, source: LogSource, worth_reading: Callable[[str], bool] = lambda line: True):
        self.source = source
        self.worth_reading = worth_reading
        self._start_over()

    def _start_over(self) -> None:
        self._reader = RecordReader(self.source, self.worth_reading)
        self._offset = 0
        self._partial = b""

    def read_new(self) -> list[Record]:
        try:
            if self.source.path.stat().st_size < self._offset:  # truncated or written anew
                self._start_over()
            with self.source.path.open("rb") as file:
                file.seek(self._offset)
                chunk = file.read()
            moment = modified_at(self.source.path)
        except FileNotFoundError:
            return []
        self._offset += len(chunk)
        *lines, self._partial = (self._partial + chunk).split(b"\n")
        records = [record for line in lines for record in self._reader.feed(line.decode("utf-8", errors="replace"))]
        return records + self._reader.flush(moment)


def merged(batches: Iterable[Iterable[Record]]) -> Iterator[Record]:
    """Each file is in time order already; ties keep the files' order."""
    return heapq.merge(*batches, key=lambda record: record.time)


# --- filters -----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Filters:
    trace_id: str | None = None
    request_id: str | None = None
    services: frozenset[str] = frozenset()
    min_level: str | None = None
    not_before: datetime | None = None


@dataclass
class RecordFilter:
    """Whether a record passes every filter given. `--request` also keeps the lines of the traces that the
    request's own lines carry: the gateway logs only the request id, and a sidecar only ever a trace id."""

    filters: Filters
    request_traces: set[str] = field(default_factory=set)

    def learn(self, record: Record) -> None:
        """Must see a request's lines before the lines of its traces are judged (they may come first in time)."""
        wanted = self.filters.request_id
        if wanted and record.request_id == wanted and (trace_id := record.trace_id):
            self.request_traces.add(trace_id)

    def worth_reading(self, line: str) -> bool:
        """Whether a raw line may pass: with an id to match, only a line that holds it can (parsing is what takes
        the time, and --all-runs reads hundreds of MB)."""
        wanted = self.filters
        ids = [wanted.trace_id] if wanted.trace_id else [wanted.request_id, *self.request_traces]
        return not any(ids) or any(found in line for found in ids if found)

    def __call__(self, record: Record) -> bool:
        wanted = self.filters
        if wanted.not_before and record.time < wanted.not_before:
            return False
        if wanted.services and not {record.service, record.app} & wanted.services:
            return False
        if wanted.min_level and LEVELS.index(record.level) < LEVELS.index(wanted.min_level):
            return False
        if wanted.trace_id and record.trace_id != wanted.trace_id:
            return False
        return not wanted.request_id or (
            record.request_id == wanted.request_id or record.trace_id in self.request_traces
        )


# --- output ------------------------------------------------------------------------------------------------------


def human_line(record: Record, service_width: int = 0) -> str:
    """`HH:MM:SS.mmm service level event key=value…`, in local time as a person's clock reads it; the ids last."""
    clock = record.time.astimezone().strftime("%H:%M:%S.%f")[:-3]
    shown = [key for key in record.fields if key not in HIDDEN_FIELDS and key not in ID_FIELDS]
    shown += [key for key in ID_FIELDS if key in record.fields]
    details = " ".join(f"{key}={compact(record.fields[key])}" for key in shown)
    return f"{clock} {record.service:<{service_width}} {record.level:<7} {record.event} {details}".rstrip()


def compact(value: Any) -> str:
    if isinstance(value, str) and value and not re.search(r'[\s"=]', value):
        return value
    return json.dumps(value, ensure_ascii=False, default=str)


def json_line(record: Record) -> str:
    ours = {"time": record.time.isoformat(), "service": record.service, "level": record.level, "event": record.event}
    theirs = {key: value for key, value in record.fields.items() if key not in ours}
    return json.dumps(ours | theirs | {"file": record.file}, ensure_ascii=False, default=str)


# --- the command -------------------------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--trace", metavar="ID", help="only lines with this trace_id")
    parser.add_argument(
        "--request", metavar="ID", help="lines with this request_id, and those of the traces its lines carry"
    )
    parser.add_argument(
        "--service",
        metavar="NAME",
        nargs="+",
        action="extend",
        default=[],
        help="an app (with its sidecar), <app>-sidecar, or a server (redis, placement…)",
    )
    parser.add_argument("--level", type=level_argument, help="this level and above: " + ", ".join(LEVELS))
    parser.add_argument(
        "--since", type=since_argument, metavar="DURATION|TIME", help="10m, 1h30m, or 2026-12-01T03:54, 03:54:10"
    )
    parser.add_argument("--follow", "-f", action="store_true", help="then print new lines as they are written")
    parser.add_argument("--json", action="store_true", help="one JSON object per line")
    parser.add_argument("--all-runs", action="store_true", help="every run's files, not only the latest run's")


def level_argument(text: str) -> str:
    if level := normal_level(text):
        return level
    raise argparse.ArgumentTypeError(f"not a level: {text!r} (one of {', '.join(LEVELS)})")


def since_argument(text: str, now: datetime | None = None) -> datetime:
    """A duration back from now (`90s`, `10m`, `1h30m`), a date and time, or a time of today; local unless zoned."""
    now = now or datetime.now(UTC)
    if DURATION_PART.sub("", text) == "" and text:
        seconds = sum(float(amount) * DURATION_UNITS[unit] for amount, unit in DURATION_PART.findall(text))
        return now - timedelta(seconds=seconds)
    try:
        return as_utc(datetime.fromisoformat(text))
    except ValueError:
        pass
    try:
        return as_utc(datetime.combine(date.today(), clock_time.fromisoformat(text)))
    except ValueError:
        raise argparse.ArgumentTypeError(f"neither a duration nor a time: {text!r}") from None


def run(layout: Layout, args: argparse.Namespace, out: TextIO = sys.stdout) -> int:
    paths = log_paths(layout)
    selection = every_run(paths) if args.all_runs else latest_run(paths)
    floors = [moment for moment in (args.since, selection.not_before) if moment is not None]
    keep = RecordFilter(
        Filters(args.trace, args.request, frozenset(args.service), args.level, max(floors, default=None))
    )
    width = max((len(source.service) for source in selection.sources if has_lines(source.path)), default=0)
    named = {name for source in selection.sources for name in (source.service, source.app)}
    if unknown := sorted(set(args.service) - named):
        # Said, since a misspelt name would otherwise show nothing at all, as if nothing had been logged.
        print(f"no logs of {', '.join(unknown)} (there are: {', '.join(sorted(named))})", file=sys.stderr)

    def emit(record: Record) -> None:
        out.write((json_line(record) if args.json else human_line(record, width)) + "\n")

    try:
        if args.follow:
            follow(layout, selection.sources, keep, emit, out.flush)
        else:
            show(selection.sources, keep, emit)
    except KeyboardInterrupt:
        return 0  # the way out of --follow
    except BrokenPipeError:
        # The reader (head, less) has gone: stop quietly, and let nothing more reach the closed pipe at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), out.fileno())
    return 0


def has_lines(path: Path) -> bool:
    try:
        return path.stat().st_size > 0
    except FileNotFoundError:
        return False


def show(sources: Sequence[LogSource], keep: RecordFilter, emit: Callable[[Record], None]) -> None:
    if keep.filters.request_id:
        # A first pass: the request's trace ids, to take in lines of those traces written before it.
        for source in sources:
            for record in read_records(source, keep.worth_reading):
                keep.learn(record)
    for record in merged(read_records(source, keep.worth_reading) for source in sources):
        if keep(record):
            emit(record)


def follow(
    layout: Layout,
    sources: Sequence[LogSource],
    keep: RecordFilter,
    emit: Callable[[Record], None],
    flush: Callable[[], None],
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """What is there, then every POLL_SECONDS what each file gained and any file that appeared (a new run, a
    restarted process), merged by time within each poll, until interrupted."""
    tails = {source.path: FileTail(source, keep.worth_reading) for source in sources}
    # Files of earlier runs stay unread; only those that appear from now on join.
    known = set(log_paths(layout))
    while True:
        batches = [tail.read_new() for tail in tails.values()]
        for record in (record for batch in batches for record in batch):
            keep.learn(record)
        for record in merged(batches):
            if keep(record):
                emit(record)
        flush()
        sleep(POLL_SECONDS)
        for path in log_paths(layout):
            if path not in known:
                known.add(path)
                tails[path] = FileTail(source_of(path), keep.worth_reading)
