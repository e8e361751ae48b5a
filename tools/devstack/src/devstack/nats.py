"""The `nats` profile's servers: NATS with JetStream (pub/sub) on 127.0.0.1; state lives in SQLite files (no server).

Dapr's pubsub.jetstream component creates no streams: it publishes to the subject named like the topic and finds the
stream by that subject, so every topic needs a stream before a sidecar publishes or subscribes to it. There is one
stream per topic because the component gives every subscription of a sidecar the same durable consumer name
({appID}), and a consumer name is unique within a stream: with one stream per topic, each (app, topic) pair gets a
consumer of its own, and every app gets every message of a topic (fan-out).
"""

import asyncio
import hashlib
import json
from dataclasses import dataclass

import httpx
import nats
import yaml
from nats.js.api import DiscardPolicy, RetentionPolicy, StorageType, StreamConfig
from nats.js.client import JetStreamContext
from nats.js.errors import NotFoundError

from devstack.install import ensure_debian_package
from devstack.layout import Layout
from devstack.processes import ManagedProcess, log
from devstack.servers import Server, start_server

# Debian bookworm's build; an unavailable pin falls back to bookworm's current build (see ensure_debian_package).
NATS_PIN = "2.9.10-1+b3"
NATS_SERVER = "/usr/sbin/nats-server"  # where the package puts it: not on a non-root user's PATH
NATS_PORT = 4222
NATS_MONITOR_PORT = 8222

MIB = 1024 * 1024
DAY = 24 * 3600.0


@dataclass(frozen=True)
class Topic:
    """A topic and the limits of its stream: past any of them the oldest messages go, read or not."""

    name: str
    max_age: float = 7 * DAY  # seconds
    max_bytes: int = 256 * MIB
    max_msgs: int = 1_000_000  # as many as the Redis profile keeps per stream
    duplicate_window: float = 120  # seconds: a CloudEvent id seen again within it is stored once (publish retries)


# Every topic the apps use, and the outbox's internal topics (namespace + app id + topic + "outbox"; daprd's namespace
# is "default" when NAMESPACE is not set, as in the dev stack). A topic missing here has no stream: publishing to it
# fails and subscribing to it fails.
TOPICS = (
    Topic("users"),
    Topic("orders"),
    # The ingest firehose: about two minutes of a load test, and at most 1 GiB of disk. The duplicate window is short
    # because the server keeps every id of the window in memory.
    Topic("telemetry", max_age=1 * DAY, max_bytes=1024 * MIB, duplicate_window=30),
    Topic("telemetry-deadletter"),
    Topic("deadletter"),
    Topic("defaultusersusersoutbox"),
    Topic("defaultordersordersoutbox"),
)

# The whole JetStream store's ceiling (above the sum of the streams' limits): publishing fails beyond it.
MAX_FILE_STORE = 4096 * MIB
MAX_MEMORY_STORE = 256 * MIB

# The pubsub component's settings that go into each durable consumer it creates. The broker refuses to change an
# existing consumer, so when they change the consumers are deleted (their apps then re-read the retained messages).
CONSUMER_SETTINGS = frozenset(
    {
        "durableName",
        "queueGroupName",
        "startSequence",
        "startTime",
        "deliverPolicy",
        "ackPolicy",
        "ackWait",
        "maxDeliver",
        "backOff",
        "maxAckPending",
        "replicas",
        "memoryStorage",
        "rateLimit",
        "heartbeat",
        "flowControl",
    }
)


def install(layout: Layout) -> None:
    ensure_debian_package("nats-server", NATS_SERVER, NATS_PIN)


def _config(layout: Layout) -> str:
    store = layout.run_dir / "nats"
    return f"""# Written by devstack on every start (edits are lost): NATS with JetStream for the `nats` profile.
server_name: sidecart
listen: 127.0.0.1:{NATS_PORT}
http: 127.0.0.1:{NATS_MONITOR_PORT}
jetstream {{
  store_dir: "{store}"
  max_file_store: {MAX_FILE_STORE}
  max_memory_store: {MAX_MEMORY_STORE}
}}
"""


def _jetstream_ready() -> bool:
    """The monitoring endpoint answers 200 once JetStream has loaded its streams."""
    try:
        response = httpx.get(f"http://127.0.0.1:{NATS_MONITOR_PORT}/healthz?js-enabled-only=true", timeout=1)
    except httpx.HTTPError:
        return False
    return response.status_code == 200


def stream_config(topic: Topic) -> StreamConfig:
    return StreamConfig(
        name=topic.name,
        subjects=[topic.name],
        retention=RetentionPolicy.LIMITS,  # every consumer (app) reads at its own pace; nothing is removed on ack
        storage=StorageType.FILE,
        discard=DiscardPolicy.OLD,
        max_msgs=topic.max_msgs,
        max_bytes=topic.max_bytes,
        max_age=topic.max_age,
        duplicate_window=topic.duplicate_window,
        num_replicas=1,
    )


def consumer_settings(layout: Layout) -> str:
    """The consumer settings of components/nats/pubsub.yaml, as a fingerprint ("" when there is no such file)."""
    component = layout.components("nats") / "pubsub.yaml"
    if not component.exists():
        return ""
    items = yaml.safe_load(component.read_text())["spec"]["metadata"]
    settings = {item["name"]: str(item.get("value", "")) for item in items if item["name"] in CONSUMER_SETTINGS}
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()


async def _ensure_streams(jetstream: JetStreamContext) -> None:
    for topic in TOPICS:
        config = stream_config(topic)
        try:
            await jetstream.stream_info(topic.name)
        except NotFoundError:
            log(f"nats: creating stream {topic.name}")
            await jetstream.add_stream(config)
        else:
            await jetstream.update_stream(config)  # same config: no change; changed limits: applied


async def _delete_consumers(jetstream: JetStreamContext) -> None:
    for topic in TOPICS:
        for consumer in await jetstream.consumers_info(topic.name):
            log(f"nats: deleting consumer {consumer.name} of stream {topic.name} (the consumer settings changed)")
            await jetstream.delete_consumer(topic.name, consumer.name)


async def _set_up(settings_changed: bool) -> None:
    client = await nats.connect(
        f"nats://127.0.0.1:{NATS_PORT}", name="devstack", connect_timeout=5, allow_reconnect=False
    )
    try:
        jetstream = client.jetstream(timeout=10)
        await _ensure_streams(jetstream)
        if settings_changed:
            await _delete_consumers(jetstream)
    finally:
        await client.close()


def set_up(layout: Layout) -> None:
    """One stream per topic, created or brought up to date, keeping their messages; when pubsub.yaml's consumer
    settings changed since the last start, the consumers made with the old ones are deleted (idempotent)."""
    settings_file = layout.run_dir / "nats" / "consumer-settings"
    settings = consumer_settings(layout)
    known = settings_file.read_text() if settings_file.exists() else settings
    asyncio.run(_set_up(settings_changed=known != settings))
    settings_file.write_text(settings)


def start(layout: Layout) -> list[Server]:
    data = layout.run_dir / "nats"
    data.mkdir(parents=True, exist_ok=True)
    # The state stores' SQLite files: the components name them relative to the repository root (daprd's cwd), and
    # SQLite creates a database file but not its folder.
    (layout.run_dir / "sqlite").mkdir(parents=True, exist_ok=True)
    config = data / "nats.conf"
    config.write_text(_config(layout))
    process = ManagedProcess(
        "nats", [NATS_SERVER, "--config", str(config)], layout.run_dir / "logs" / "nats.log", cwd=data
    )
    server = start_server("nats", NATS_PORT, process, 30, _jetstream_ready)
    try:
        set_up(layout)
    except Exception:
        if server.process is not None:
            server.process.stop()
        raise
    return [server]
