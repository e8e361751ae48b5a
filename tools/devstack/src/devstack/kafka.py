"""The `kafka` profile's event bus: Apache Kafka, one node in KRaft mode (broker and controller in one JVM, no
ZooKeeper) on 127.0.0.1, with its data under .run/kafka.

There is no release tarball to download here, only Maven Central: Maven (deploy/kafka/pom.xml) copies the broker's
jars into ~/.cache/sidecart/kafka-<version>/libs once, and the JVM runs kafka.Kafka with them as its class path.
The data directory is formatted once with a fixed cluster id; later starts reuse it. Each start gives the outbox's
internal topics the partitions they need (see OUTBOX_PARTITIONS).
"""

import os
import shutil
import socket
import struct
import subprocess
import time
from pathlib import Path
from string import Template

import yaml

from devstack.install import ensure_debian_package
from devstack.layout import Layout, user_cache
from devstack.processes import ManagedProcess, log, port_open, wait_until
from devstack.servers import Server, start_server

# Kafka 3.9: KRaft without ZooKeeper, and still every request version Dapr's client (IBM/sarama 1.48) may send;
# 4.x no longer serves those older than Kafka 2.1's. Keep in step with kafka.version in deploy/kafka/pom.xml and
# the `version` of components/kafka/pubsub.yaml.
KAFKA_VERSION = "3.9.2"
KAFKA_PORT = 9092
CONTROLLER_PORT = 9093
# Any fixed 16-byte id (here base64url of b"sidecart-kafka-1"): a data directory formatted on another run or
# machine matches the broker's configuration.
CLUSTER_ID = "c2lkZWNhcnQta2Fma2EtMQ"
NODE_ID = 1
# Topics are created on first use with one partition. Every app runs as one instance (its own consumer group) and
# would consume all partitions anyway; Dapr's component delivers one message at a time per partition (the next waits
# for the app's answer), so one partition gives each app a topic's events in publish order, at about 550-650
# deliveries/s per app and topic (measured with a trivial app). The price: an event answered RETRY holds back that
# topic's later events for that app until its retries end (resiliency's event-retry, ~15 s, then the dead letters).
NUM_PARTITIONS = 1
# Except the outbox's internal topics (`<namespace><app><topic>outbox`). The sidecar checks each of their messages
# against the state store before it publishes the event, and a message whose state is not there (its transaction
# failed after the outbox had published it, or it was handled but not yet committed when a sidecar stopped) holds its
# partition for the outbox's 10 s of retries before it is discarded. With one partition, each such message held back
# every later event of the app for those 10 s, and a dozen of them (a run of crash tests) delayed the next run's events
# by two minutes. 32 partitions, consumed side by side, confine each wait to 1/32 of the events. Their events carry no
# order a consumer relies on: one final event per order, one registration per user.
OUTBOX_PARTITIONS = 32

# Debian bookworm's builds; an unavailable pin falls back to bookworm's current build (see ensure_debian_package).
JAVA_PIN = "17.0.21.1+2-1~deb12u1"
MAVEN_PIN = "3.8.7-1"

# Kafka's own start script uses these collector settings; the heap is sized for a development machine.
JVM_OPTIONS = (
    "-Xms256m",
    "-Xmx512m",
    "-XX:+UseG1GC",
    "-XX:MaxGCPauseMillis=20",
    "-XX:InitiatingHeapOccupancyPercent=35",
    "-XX:+ExplicitGCInvokesConcurrent",
    "-XX:+ExitOnOutOfMemoryError",
    "-Djava.awt.headless=true",
)


def libs_dir() -> Path:
    return user_cache() / f"kafka-{KAFKA_VERSION}" / "libs"


def _stamp(libs: Path) -> Path:
    """Written after Maven copied every jar: the version and the jars' names, one a line."""
    return libs.parent / "libs.complete"


def _libs_complete(libs: Path) -> bool:
    stamp = _stamp(libs)
    if not stamp.exists():
        return False
    version, *jars = stamp.read_text().split()
    return version == KAFKA_VERSION and bool(jars) and all((libs / jar).is_file() for jar in jars)


def _maven(layout: Layout, target: Path) -> None:
    """Copies the broker's jars into `target`; says every few seconds how many files it downloaded so far."""
    argv = [
        "mvn",
        "-B",
        "-f",
        str(layout.repo / "deploy" / "kafka" / "pom.xml"),
        # The project's own Maven repository, beside its other caches: a user's ~/.m2 (and any settings or mirrors
        # it has) stays untouched, and deleting ~/.cache/sidecart removes everything the project downloaded.
        f"-Dmaven.repo.local={user_cache() / 'm2'}",
        f"-Dkafka.libs={target}",
        "dependency:copy-dependencies",
    ]
    output: list[str] = []
    downloaded = 0
    said = time.monotonic()
    with subprocess.Popen(
        argv, cwd=layout.repo, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True
    ) as mvn:
        assert mvn.stdout is not None
        for line in mvn.stdout:
            output.append(line.rstrip())
            if "Downloaded from" in line:
                downloaded += 1
                if time.monotonic() - said >= 3:
                    log(f"kafka: {downloaded} files downloaded from Maven Central")
                    said = time.monotonic()
    if mvn.returncode != 0:
        tail = "\n".join(output[-40:])
        raise RuntimeError(f"Maven could not fetch Kafka {KAFKA_VERSION} (exit {mvn.returncode}):\n{tail}")
    if downloaded:
        log(f"kafka: {downloaded} files downloaded from Maven Central")


def install(layout: Layout) -> None:
    """A JRE and Maven (Debian's, if missing), then the broker's jars unless this version's are complete."""
    ensure_debian_package("openjdk-17-jre-headless", "java", JAVA_PIN)
    ensure_debian_package("maven", "mvn", MAVEN_PIN)
    libs = libs_dir()
    if _libs_complete(libs):
        return
    log(f"kafka: fetching Kafka {KAFKA_VERSION}'s broker jars from Maven Central into {libs} (one time, ~50 MB)")
    # Into a directory of its own first: an interrupted run leaves no half-filled libs behind.
    partial = libs.parent / f"libs.partial-{os.getpid()}"
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    try:
        _maven(layout, partial)
        jars = sorted(p.name for p in partial.glob("*.jar"))
        if f"kafka_2.13-{KAFKA_VERSION}.jar" not in jars:
            raise RuntimeError(f"Maven finished but kafka_2.13-{KAFKA_VERSION}.jar is not in {partial}")
        if _libs_complete(libs):  # another install finished meanwhile
            return
        shutil.rmtree(libs, ignore_errors=True)
        partial.rename(libs)
        _stamp(libs).write_text("\n".join([KAFKA_VERSION, *jars]) + "\n")
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    log(f"kafka: {len(jars)} jars in {libs}")


def _request(port: int, api_key: int, version: int, body: bytes) -> bytes:
    """One request in Kafka's wire protocol (request header v1); the response without its size and correlation id."""
    client_id = b"devstack"
    header = struct.pack(">hhih", api_key, version, 1, len(client_id)) + client_id
    with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
        sock.sendall(struct.pack(">i", len(header) + len(body)) + header + body)
        data = b""
        while len(data) < 4 or len(data) < 4 + struct.unpack_from(">i", data)[0]:
            chunk = sock.recv(65536)
            if not chunk:
                raise ConnectionError("the broker closed the connection")
            data += chunk
    return data[8:]


class _Reader:
    def __init__(self, data: bytes):
        self.data = data
        self.offset = 0

    def int16(self) -> int:
        (value,) = struct.unpack_from(">h", self.data, self.offset)
        self.offset += 2
        return int(value)

    def int32(self) -> int:
        (value,) = struct.unpack_from(">i", self.data, self.offset)
        self.offset += 4
        return int(value)

    def int8(self) -> int:
        (value,) = struct.unpack_from(">b", self.data, self.offset)
        self.offset += 1
        return int(value)

    def skip_int32_array(self) -> None:
        count = self.int32()
        self.offset += 4 * max(count, 0)

    def string(self) -> str | None:
        size = self.int16()
        if size < 0:
            return None
        value = self.data[self.offset : self.offset + size].decode()
        self.offset += size
        return value


def _metadata() -> tuple[str | None, int, list[tuple[int, str | None, int]]]:
    """Metadata v4 for no topic in particular (and creating none): the cluster id, the active controller's id and
    the live brokers (node id, host, port)."""
    reply = _Reader(_request(KAFKA_PORT, 3, 4, struct.pack(">ib", -1, 0)))
    reply.int32()  # throttle time
    brokers = []
    for _ in range(reply.int32()):
        node, host, port, _rack = reply.int32(), reply.string(), reply.int32(), reply.string()
        brokers.append((node, host, port))
    cluster_id, controller = reply.string(), reply.int32()
    return cluster_id, controller, brokers


def _string(value: str) -> bytes:
    encoded = value.encode()
    return struct.pack(">h", len(encoded)) + encoded


def partition_counts(topics: list[str]) -> dict[str, int]:
    """Metadata v4 for these topics, creating none: each existing topic's partition count."""
    request = struct.pack(">i", len(topics)) + b"".join(_string(topic) for topic in topics) + b"\x00"
    reply = _Reader(_request(KAFKA_PORT, 3, 4, request))
    reply.int32()  # throttle time
    for _ in range(reply.int32()):  # brokers
        reply.int32(), reply.string(), reply.int32(), reply.string()
    reply.string(), reply.int32()  # cluster id, controller
    counts = {}
    for _ in range(reply.int32()):
        error, name, _internal = reply.int16(), reply.string(), reply.int8()
        partitions = reply.int32()
        for _ in range(partitions):
            reply.int16(), reply.int32(), reply.int32()  # error, index, leader
            reply.skip_int32_array()  # replicas
            reply.skip_int32_array()  # in-sync replicas
        if error == 0 and name is not None:
            counts[name] = partitions
    return counts


# Answers that mean "done already": the broker's metadata may lag a change just made.
_TOPIC_ALREADY_EXISTS = 36
_INVALID_PARTITIONS = 37  # "already has that many"


def _expect_done(what: str, reply: _Reader, throttle_time: bool, done_already: int) -> None:
    if throttle_time:
        reply.int32()
    for _ in range(reply.int32()):
        name, error = reply.string(), reply.int16()
        message = reply.string() if throttle_time else None  # CreatePartitions v0 names its errors
        if error not in (0, done_already):
            raise RuntimeError(f"kafka: {what} {name} failed with error code {error}: {message or ''}")


def outbox_topics(layout: Layout) -> list[str]:
    """The outbox's internal topics the kafka profile's pub/sub component allows (its allowedTopics)."""
    component = yaml.safe_load((layout.repo / "components" / "kafka" / "pubsub.yaml").read_text())
    allowed = next(item["value"] for item in component["spec"]["metadata"] if item["name"] == "allowedTopics")
    return [topic.strip() for topic in allowed.split(",") if topic.strip().endswith("outbox")]


def ensure_partitions(topics: list[str], count: int, timeout: float = 15) -> None:
    """Creates each topic with `count` partitions, or adds partitions to one that has fewer (a data directory of
    an earlier version); never removes any. CreateTopics v0 and CreatePartitions v0, until the metadata shows it."""
    deadline = time.monotonic() + timeout
    changed: set[str] = set()
    timeout_ms = struct.pack(">i", 10_000)
    while True:
        counts = partition_counts(topics)
        missing = [topic for topic in topics if topic not in counts]
        fewer = [topic for topic in topics if 0 < counts.get(topic, 0) < count]
        if not missing and not fewer:
            break
        if time.monotonic() > deadline:
            raise RuntimeError(f"kafka: {', '.join(missing + fewer)} still lack their {count} partitions")
        if missing:
            no_assignments_or_configs = struct.pack(">ii", 0, 0)
            entries = b"".join(
                _string(topic) + struct.pack(">ih", count, 1) + no_assignments_or_configs for topic in missing
            )
            request = struct.pack(">i", len(missing)) + entries + timeout_ms
            reply = _Reader(_request(KAFKA_PORT, 19, 0, request))
            _expect_done("creating topic", reply, throttle_time=False, done_already=_TOPIC_ALREADY_EXISTS)
        if fewer:
            entries = b"".join(_string(topic) + struct.pack(">ii", count, -1) for topic in fewer)  # -1: broker assigns
            request = struct.pack(">i", len(fewer)) + entries + timeout_ms + b"\x00"  # not validate-only
            reply = _Reader(_request(KAFKA_PORT, 37, 0, request))
            _expect_done("adding partitions to", reply, throttle_time=True, done_already=_INVALID_PARTITIONS)
        changed.update(missing + fewer)
        time.sleep(0.2)
    if changed:
        log(f"kafka: {', '.join(sorted(changed))}: {count} partitions each")


def _ours() -> bool:
    """Whatever answers on the port speaks Kafka and is this project's cluster (even if not ready yet)."""
    try:
        return _metadata()[0] == CLUSTER_ID
    except (OSError, struct.error, UnicodeDecodeError):
        return False


def _coordinating() -> bool:
    """FindCoordinator v1 for a consumer group: the group coordinator (the consumer offsets topic, created on the
    first such request) is loaded, so a sidecar's consumer group can join at once."""
    key = b"devstack-readiness"
    reply = _Reader(_request(KAFKA_PORT, 10, 1, struct.pack(">h", len(key)) + key + b"\x00"))
    reply.int32()  # throttle time
    return reply.int16() == 0


def ready() -> bool:
    """The broker takes requests: the metadata lists this node as a live broker (in KRaft: registered, caught up
    with the metadata log and unfenced, so it leads its partitions and accepts produce requests), a controller is
    active, and consumer groups can find their coordinator."""
    try:
        cluster_id, controller, brokers = _metadata()
        if cluster_id != CLUSTER_ID or controller < 0 or (NODE_ID, "127.0.0.1", KAFKA_PORT) not in brokers:
            return False
        return _coordinating()
    except (OSError, struct.error, UnicodeDecodeError):
        return False


def _java() -> str:
    java = shutil.which("java")
    if java is None:
        raise RuntimeError("no `java` on PATH: run `make setup PROFILE=kafka` (installs openjdk-17-jre-headless)")
    return java


def start(layout: Layout) -> list[Server]:
    """The broker on 127.0.0.1:9092 (controller 9093), data in .run/kafka; ready once it serves metadata and
    consumer groups. SIGTERM shuts it down cleanly (controlled shutdown), measured at 0.5-1.5 s."""
    if port_open(KAFKA_PORT):
        if not _ours():
            raise RuntimeError(f"127.0.0.1:{KAFKA_PORT} is taken by something that is not this project's Kafka")
        log(f"kafka: a broker of cluster {CLUSTER_ID} already answers on 127.0.0.1:{KAFKA_PORT}; using it")
        wait_until("kafka", ready, 90)
        ensure_partitions(outbox_topics(layout), OUTBOX_PARTITIONS)
        return [Server("kafka", KAFKA_PORT, None)]
    if port_open(CONTROLLER_PORT):
        raise RuntimeError(f"127.0.0.1:{CONTROLLER_PORT}, Kafka's controller port, is taken by another program")
    libs = libs_dir()
    if not _libs_complete(libs):
        raise RuntimeError(f"Kafka {KAFKA_VERSION}'s jars are not in {libs}: run `make setup PROFILE=kafka`")
    home = layout.run_dir / "kafka"
    data = home / "data"
    data.mkdir(parents=True, exist_ok=True)
    template = Template((layout.repo / "deploy" / "kafka" / "server.properties").read_text())
    config = home / "server.properties"
    config.write_text(
        template.substitute(
            broker_port=KAFKA_PORT, controller_port=CONTROLLER_PORT, log_dirs=data, num_partitions=NUM_PARTITIONS
        )
    )
    java = [
        _java(),
        *JVM_OPTIONS,
        f"-Dlog4j.configuration=file:{layout.repo / 'deploy' / 'kafka' / 'log4j.properties'}",
        "-cp",
        f"{libs}/*",  # the JVM expands this itself: every jar in libs
    ]
    if not (data / "meta.properties").exists():
        log(f"kafka: formatting {data.relative_to(layout.repo)} (cluster {CLUSTER_ID})")
        fmt = [*java, "kafka.tools.StorageTool", "format", "-t", CLUSTER_ID, "-c", str(config)]
        result = subprocess.run(fmt, cwd=home, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise RuntimeError(f"formatting Kafka's data directory failed:\n{result.stdout}{result.stderr}")
    process = ManagedProcess("kafka", [*java, "kafka.Kafka", str(config)], layout.run_dir / "logs" / "kafka.log", home)
    servers = [start_server("kafka", KAFKA_PORT, process, 90, ready)]
    ensure_partitions(outbox_topics(layout), OUTBOX_PARTITIONS)
    return servers
