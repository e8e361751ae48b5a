"""Traces: Zipkin's server on 127.0.0.1:9411 (ZIPKIN_PORT), where every daprd and every app sends its spans.

Zipkin's server comes only from Maven Central here: Maven (deploy/zipkin/pom.xml) copies its slim jar into
~/.cache/sidecart/zipkin-<version>/ once, and the JVM runs it. Spans are kept in memory only (Zipkin has no storage
on files: memory, Cassandra, Elasticsearch or MySQL), so a restart forgets every trace; its log is
.run/logs/zipkin.log. Its UI is at /zipkin/, its API at /api/v2/.

Its JVM takes seconds to start (measured on 2 cores: 6-7.5 s alone, 8-12 s beside the apps' start), and nothing needs
it before the apps are up: `start` only launches it and returns a StartingServer, whose readiness the platform checks
once its apps are up, so the two starts overlap (it then waited 0.1 s for Zipkin).
"""

import os
import shutil
import subprocess
import threading
from pathlib import Path
from typing import Any

import httpx

from devstack.install import ensure_debian_package
from devstack.kafka import JAVA_PIN, MAVEN_PIN
from devstack.layout import Layout, user_cache
from devstack.processes import ManagedProcess, log, port_open, wait_until
from devstack.servers import Server, StartingServer

# Keep in step with zipkin.version in deploy/zipkin/pom.xml. 3.x needs Java 17, which the kafka profile installs too.
ZIPKIN_VERSION = "3.6.1"
JAR_SIZE_MB = 86  # what the download costs, said before it starts
DEFAULT_PORT = 9411
PORT_VARIABLE = "ZIPKIN_PORT"
SPANS_PATH = "/api/v2/spans"
# At sampling 1 a benchmark sends thousands of spans a second (an order makes about 170): Zipkin keeps the newest
# MAX_SPANS and drops the oldest traces. Each held span took about 3 KB of heap here (the platform's own spans, posted
# at 6,000-7,000 a second): 256 MB ran out at about 80,000 (Zipkin's default is 500,000), and 50,000 fit with room.
MAX_SPANS = 50_000
# Ready in 6-12 s here; a loaded CI machine, starting the apps at the same time, takes longer.
READY_TIMEOUT_S = 120

JVM_OPTIONS = (
    "-Xms64m",
    "-Xmx256m",
    # One small heap: the serial collector needs no GC threads, and costs the least memory.
    "-XX:+UseSerialGC",
    # Only the quick compiler: Zipkin was ready in 7 s instead of 14 s, and its work here is light.
    "-XX:TieredStopAtLevel=1",
    "-XX:+ExitOnOutOfMemoryError",
    # Names resolved by the JDK: Armeria's own DNS resolver (Netty's) held a UDP socket open on every interface.
    "-Dcom.linecorp.armeria.useJdkDnsResolver=true",
    # Idle connections stay open (Armeria closed them after 15 s). A sidecar's exporter keeps its connection for 90 s
    # and posts a batch on it without retrying: one posted as Zipkin closed it was lost ("write: broken pipe" in a
    # sidecar's log), and with it that sidecar's spans of a traced order. The exporters close their own idle ones.
    "-Dcom.linecorp.armeria.defaultServerIdleTimeoutMillis=0",
)


def port() -> int:
    return int(os.environ.get(PORT_VARIABLE, DEFAULT_PORT))


def spans_endpoint(on_port: int | None = None) -> str:
    """Where daprd (its Configuration's tracing.zipkin.endpointAddress) and the apps (OTEL_EXPORTER_ZIPKIN_ENDPOINT)
    post their spans."""
    return f"http://127.0.0.1:{port() if on_port is None else on_port}{SPANS_PATH}"


def jar_path() -> Path:
    return user_cache() / f"zipkin-{ZIPKIN_VERSION}" / f"zipkin-server-{ZIPKIN_VERSION}-slim.jar"


def _stamp(jar: Path) -> Path:
    """Written after Maven copied the jar: the version and the jar's size in bytes."""
    return jar.parent / "jar.complete"


def _jar_complete(jar: Path) -> bool:
    stamp = _stamp(jar)
    if not stamp.exists() or not jar.is_file():
        return False
    version, size = stamp.read_text().split()
    return version == ZIPKIN_VERSION and int(size) == jar.stat().st_size


def _say_download_progress(done: threading.Event) -> None:
    """Every few seconds, how much of the jar is in Maven's repository so far: one 86 MB file, during which Maven
    itself (in batch mode) says nothing."""
    folder = user_cache() / "m2" / "io" / "zipkin" / "zipkin-server" / ZIPKIN_VERSION
    while not done.wait(5):
        if folder.is_dir():
            size = sum(f.stat().st_size for f in folder.iterdir() if f.is_file())
            log(f"zipkin: {size / 1e6:.0f} of {JAR_SIZE_MB} MB downloaded")


def _maven(layout: Layout, target: Path) -> None:
    """Copies the server's jar into `target`."""
    argv = [
        "mvn",
        "-B",
        # A jar whose checksum differs from Central's .sha1 fails the install, instead of a warning.
        "--strict-checksums",
        "-f",
        str(layout.repo / "deploy" / "zipkin" / "pom.xml"),
        # The project's own Maven repository (as for Kafka): a user's ~/.m2 stays untouched.
        f"-Dmaven.repo.local={user_cache() / 'm2'}",
        f"-Dzipkin.dir={target}",
        "dependency:copy",
    ]
    done = threading.Event()
    progress = threading.Thread(target=_say_download_progress, args=(done,), daemon=True)
    progress.start()
    try:
        result = subprocess.run(
            argv, cwd=layout.repo, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True
        )
    finally:
        done.set()
    if result.returncode != 0:
        tail = "\n".join(result.stdout.splitlines()[-40:])
        raise RuntimeError(f"Maven could not fetch Zipkin {ZIPKIN_VERSION} (exit {result.returncode}):\n{tail}")


def install(layout: Layout) -> None:
    """A JRE and Maven (Debian's, if missing), then Zipkin's jar unless this version's is complete."""
    ensure_debian_package("openjdk-17-jre-headless", "java", JAVA_PIN)
    ensure_debian_package("maven", "mvn", MAVEN_PIN)
    jar = jar_path()
    if _jar_complete(jar):
        return
    log(f"zipkin: fetching Zipkin {ZIPKIN_VERSION}'s server from Maven Central (one time, ~{JAR_SIZE_MB} MB)")
    # Into a directory of its own first: an interrupted run leaves no half-written jar where the platform looks.
    partial = jar.parent / f"partial-{os.getpid()}"
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    try:
        _maven(layout, partial)
        copied = partial / jar.name
        if not copied.is_file():
            raise RuntimeError(f"Maven finished but {jar.name} is not in {partial}")
        if _jar_complete(jar):  # another install finished meanwhile
            return
        copied.replace(jar)
        _stamp(jar).write_text(f"{ZIPKIN_VERSION} {jar.stat().st_size}\n")
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    log(f"zipkin: {jar.name} ({jar.stat().st_size / 1e6:.0f} MB) in {jar.parent}")


def healthy(on_port: int) -> bool:
    """Zipkin's /health says UP (its storage included): it takes spans and answers queries."""
    try:
        response = httpx.get(f"http://127.0.0.1:{on_port}/health", timeout=1)
        return response.status_code == 200 and response.json().get("zipkin", {}).get("status") == "UP"
    except (httpx.HTTPError, ValueError, AttributeError):
        return False


def _java() -> str:
    java = shutil.which("java")
    if java is None:
        raise RuntimeError("no `java` on PATH: run `make setup` (installs openjdk-17-jre-headless)")
    return java


def start(layout: Layout) -> list[Server]:
    """Launches Zipkin on 127.0.0.1:<port> with in-memory storage and returns at once (see StartingServer); uses
    the Zipkin that already answers there, if one does."""
    zipkin_port = port()
    if port_open(zipkin_port):
        log(f"zipkin: something already answers on 127.0.0.1:{zipkin_port}; using it once /health says it is Zipkin")
        wait_until("zipkin", lambda: healthy(zipkin_port), 30)
        return [Server("zipkin", zipkin_port, None)]
    jar = jar_path()
    if not _jar_complete(jar):
        raise RuntimeError(f"Zipkin {ZIPKIN_VERSION}'s jar is not in {jar.parent}: run `make setup`")
    argv = [
        _java(),
        *JVM_OPTIONS,
        "-jar",
        str(jar),
        # Armeria's port list: an entry gets its address, port and protocol together. Given only the address, the
        # entry replaced the default one and Zipkin listened on a random port (QUERY_PORT then counts for nothing).
        "--armeria.ports[0].ip=127.0.0.1",
        f"--armeria.ports[0].port={zipkin_port}",
        "--armeria.ports[0].protocols[0]=http",
    ]
    env = {**os.environ, "STORAGE_TYPE": "mem", "MEM_MAX_SPANS": str(MAX_SPANS)}
    process = ManagedProcess("zipkin", argv, layout.run_dir / "logs" / "zipkin.log", cwd=layout.run_dir, env=env)
    log(f"starting zipkin on 127.0.0.1:{zipkin_port} (its JVM takes seconds: the platform goes on starting meanwhile)")
    process.start()
    return [StartingServer("zipkin", zipkin_port, process, lambda: healthy(zipkin_port), READY_TIMEOUT_S)]


def span_tree(spans: list[dict[str, Any]]) -> list[str]:
    """One trace as text: a line per span, children under their parent in the order they started, each with when it
    started (ms after the trace did), how long it took, whose it is (an app's, or its sidecar's) and its name."""
    by_parent: dict[str | None, list[dict[str, Any]]] = {}
    known = {span["id"] for span in spans}
    for span in sorted(spans, key=lambda span: span.get("timestamp", 0)):
        parent = span.get("parentId")
        by_parent.setdefault(parent if parent in known else None, []).append(span)
    start = min((span.get("timestamp", 0) for span in spans), default=0)
    lines: list[str] = []

    def walk(parent: str | None, depth: int) -> None:
        for span in by_parent.get(parent, []):
            whose = span["localEndpoint"]["serviceName"]
            if span.get("tags", {}).get("otel.scope.name") == "dapr-diagnostics":
                whose += " (sidecar)"
            offset, took = (span.get("timestamp", 0) - start) / 1000, span.get("duration", 0) / 1000
            lines.append(f"{offset:9.1f} ms {took:8.1f} ms  {'  ' * depth}{whose}: {span['name']}")
            walk(span["id"], depth + 1)

    walk(None, 0)
    return lines


def print_trace(trace_id: str) -> int:
    """Prints one trace from the running Zipkin as a tree (`python -m devstack trace <id>`)."""
    response = httpx.get(f"http://127.0.0.1:{port()}/api/v2/trace/{trace_id}", timeout=10)
    if response.status_code != 200:
        log(f"zipkin answered {response.status_code} for trace {trace_id}: {response.text[:200]}")
        return 1
    spans = response.json()
    services = sorted({span["localEndpoint"]["serviceName"] for span in spans})
    print(f"trace {trace_id}: {len(spans)} spans from {', '.join(services)}")
    print("\n".join(span_tree(spans)))
    return 0
