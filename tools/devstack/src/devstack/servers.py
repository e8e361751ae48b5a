"""Servers on 127.0.0.1 with their data under .run/: sentry, placement and scheduler (every profile) and Redis
(local)."""

import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx

from devstack.identity import TrustRoot
from devstack.layout import Layout
from devstack.processes import ManagedProcess, log, port_open, wait_until


@dataclass(frozen=True)
class Server:
    name: str
    port: int
    process: ManagedProcess | None  # None: something already answered on the port, and it is not ours to stop


@dataclass(frozen=True)
class StartingServer(Server):
    """A server whose process is started but may not be ready yet: whoever needs it waits with `wait_until_ready`,
    so that its slow start overlaps other work."""

    ready: Callable[[], bool]
    ready_timeout: float
    started_at: float = field(default_factory=time.monotonic)

    def wait_until_ready(self) -> None:
        waiting_since = time.monotonic()

        def up() -> bool:
            if self.process is not None and not self.process.running():
                raise RuntimeError(f"{self.name} exited with {self.process.exit_code()}:\n{self.process.tail()}")
            return self.ready()

        wait_until(self.name, up, self.ready_timeout)
        now = time.monotonic()
        log(
            f"{self.name} is ready on 127.0.0.1:{self.port}, {now - self.started_at:.1f} s after its start"
            f" (waited {now - waiting_since:.1f} s for it)"
        )


def _healthz(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def start_server(
    name: str, port: int, process: ManagedProcess, ready_timeout: float, ready: Callable[[], bool]
) -> Server:
    """Starts `process` and waits until `ready`; if `port` already answers, uses whatever is there instead."""
    if port_open(port):
        log(f"{name}: something already answers on 127.0.0.1:{port}; using it once it is ready")
        wait_until(name, ready, ready_timeout)
        return Server(name, port, None)
    log(f"starting {name} on 127.0.0.1:{port}")
    process.start()

    def up() -> bool:
        if not process.running():
            raise RuntimeError(f"{name} exited with {process.exit_code()}:\n{process.tail()}")
        return ready()

    wait_until(name, up, ready_timeout)
    return Server(name, port, process)


REDIS_PORT = 6379
PLACEMENT_PORT, PLACEMENT_HEALTHZ, PLACEMENT_METRICS = 50005, 58080, 59090
SCHEDULER_PORT, SCHEDULER_HEALTHZ, SCHEDULER_METRICS = 50006, 58081, 59091
SCHEDULER_ETCD_CLIENT, SCHEDULER_ETCD_PEER = 52379, 52380
# The dapr CLI points every daprd whose Configuration turns mTLS on at sentry on localhost:50001.
SENTRY_PORT, SENTRY_HEALTHZ = 50001, 58082
SENTRY_ADDRESS = f"127.0.0.1:{SENTRY_PORT}"
# Sentry's own trust domain, in which it signs the identities of placement and scheduler (and daprd checks them).
CONTROL_PLANE_TRUST_DOMAIN = "localhost"


def _control_plane_tls(trust: TrustRoot | None) -> list[str]:
    """Placement and scheduler serve mTLS only, with identities from sentry: a daprd with mTLS on accepts no other.
    Without a trust root (only to measure what mTLS costs), they serve plaintext."""
    if trust is None:
        return []
    return [
        "--tls-enabled",
        "--trust-anchors-file",
        str(trust.root_certificate),
        "--trust-domain",
        CONTROL_PLANE_TRUST_DOMAIN,
        "--sentry-address",
        SENTRY_ADDRESS,
    ]


def start_redis(layout: Layout) -> Server:
    data = layout.run_dir / "redis"
    data.mkdir(parents=True, exist_ok=True)
    argv = [
        "redis-server",
        "--bind",
        "127.0.0.1",
        "--port",
        str(REDIS_PORT),
        "--dir",
        str(data),
        "--appendonly",
        "yes",
        "--save",
        "",
        "--daemonize",
        "no",
        "--protected-mode",
        "yes",
    ]
    process = ManagedProcess("redis", argv, layout.run_dir / "logs" / "redis.log", cwd=data)
    return start_server("redis", REDIS_PORT, process, 120, redis_ready)


def redis_ready() -> bool:
    """Redis answers PING with PONG. An open port is not enough: while it loads its append-only file (seconds, after
    a few benchmarks) it accepts connections and answers every command with LOADING, and a daprd that starts then
    fails its components and exits."""
    try:
        with socket.create_connection(("127.0.0.1", REDIS_PORT), timeout=2) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


def _start_control_plane(
    layout: Layout, name: str, port: int, healthz: int, metrics: int | None, flags: list[str], ready_timeout: float
) -> Server:
    """Starts one of Dapr's control-plane servers with every port it opens on loopback, ready when its healthz says
    so. `metrics` None: no metrics server."""
    argv = [
        str(layout.runtime_bin / name),
        "--port",
        str(port),
        "--listen-address",
        "127.0.0.1",
        "--healthz-port",
        str(healthz),
        "--healthz-listen-address",
        "127.0.0.1",
        *(
            ["--metrics-port", str(metrics), "--metrics-listen-address", "127.0.0.1"]
            if metrics is not None
            else ["--enable-metrics=false"]
        ),
        *flags,
        "--log-level",
        "warn",
    ]
    process = ManagedProcess(name, argv, layout.run_dir / "logs" / f"{name}.log", cwd=layout.run_dir)
    return start_server(name, port, process, ready_timeout, lambda: _healthz(healthz))


def start_sentry(layout: Layout, trust: TrustRoot) -> Server:
    """Dapr's certificate authority, signing with the issuer of the trust root made at setup. Its metrics are off:
    sentry 1.18.2 builds its metrics server without the listen address it is given (placement and scheduler pass
    theirs on), so it would listen on every interface."""
    flags = [
        "--issuer-credentials",
        str(trust.folder),
        "--trust-domain",
        CONTROL_PLANE_TRUST_DOMAIN,
        "--config",
        str(layout.repo / "deploy" / "dapr" / "config.yaml"),
        "--mode",
        "standalone",
    ]
    return _start_control_plane(layout, "sentry", SENTRY_PORT, SENTRY_HEALTHZ, None, flags, 30)


def start_placement(layout: Layout, trust: TrustRoot | None) -> Server:
    # JSON lines, as every daprd and app writes them.
    flags = [*_control_plane_tls(trust), "--log-as-json"]
    return _start_control_plane(layout, "placement", PLACEMENT_PORT, PLACEMENT_HEALTHZ, PLACEMENT_METRICS, flags, 30)


def start_scheduler(layout: Layout, trust: TrustRoot | None) -> Server:
    data = layout.run_dir / "scheduler"
    data.mkdir(parents=True, exist_ok=True)
    flags = [
        "--etcd-data-dir",
        str(data),
        "--etcd-client-port",
        str(SCHEDULER_ETCD_CLIENT),
        "--etcd-initial-cluster",
        f"dapr-scheduler-server-0=http://127.0.0.1:{SCHEDULER_ETCD_PEER}",
        "--etcd-client-listen-address",
        "127.0.0.1",
        *_control_plane_tls(trust),
        "--log-as-json",
    ]
    return _start_control_plane(layout, "scheduler", SCHEDULER_PORT, SCHEDULER_HEALTHZ, SCHEDULER_METRICS, flags, 60)
