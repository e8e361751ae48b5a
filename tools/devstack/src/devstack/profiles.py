"""Component profiles: a folder of YAML under components/, and the servers the project runs on 127.0.0.1 for it.

The apps and dapr.yaml never change between profiles; only the sidecars' resources path does. A profile that is not
listed here (one of your own, pointing at managed services) gets no servers of its own: only placement, scheduler and
the observability backends every profile has.
"""

import importlib
from collections.abc import Callable
from dataclasses import dataclass

from devstack.install import REDIS_PIN, ensure_debian_package, install_common
from devstack.layout import Layout
from devstack.prometheus import REDIS_EXPORTER, with_exporter
from devstack.servers import Server, start_redis


@dataclass(frozen=True)
class ServerKit:
    """How to install one server (idempotent) and how to start it, with whatever one-time setup it needs."""

    name: str
    install: Callable[[Layout], None]
    start: Callable[[Layout], list[Server]]


REDIS = ServerKit(
    "redis",
    install=lambda _: ensure_debian_package("redis-server", "redis-server", REDIS_PIN),
    # Redis' exporter beside it: what Prometheus knows of Redis (memory, clients, commands) comes through it.
    start=lambda layout: with_exporter(layout, start_redis(layout), REDIS_EXPORTER),
)


def server_kit(name: str) -> ServerKit:
    """Redis, or the module devstack.<name> (postgres, kafka, nats, rabbitmq, zipkin, prometheus), imported only when a
    profile needs it."""
    if name == "redis":
        return REDIS
    module = importlib.import_module(f"devstack.{name}")
    return ServerKit(name, module.install, module.start)


DEFAULT_PROFILE = "local"

# The profiles this repository ships and tests, in the order the conformance matrix lists them.
PROFILE_SERVERS: dict[str, tuple[str, ...]] = {
    "local": ("redis",),
    "kafka": ("postgres", "kafka"),
    "nats": ("nats",),
    "rabbitmq": ("postgres", "rabbitmq"),
}


# Every profile, your own too, also runs the backends that make the platform visible: traces (Zipkin) and metrics
# (Prometheus, last, once the servers whose exporters it scrapes are up).
OBSERVABILITY_SERVERS: tuple[str, ...] = ("zipkin", "prometheus")


def server_kits(profile: str) -> list[ServerKit]:
    return [server_kit(name) for name in (*PROFILE_SERVERS.get(profile, ()), *OBSERVABILITY_SERVERS)]


def available_profiles(layout: Layout) -> list[str]:
    """Every folder under components/: the shipped profiles first, in their order, then any of your own."""
    folders = {p.name for p in (layout.repo / "components").iterdir() if p.is_dir()}
    return [p for p in PROFILE_SERVERS if p in folders] + sorted(folders - PROFILE_SERVERS.keys())


def install(layout: Layout, profiles: list[str]) -> None:
    """Installs what these profiles lack (idempotent): the runtime, the secrets, each profile's servers."""
    install_common(layout)
    kits = {kit.name: kit for profile in profiles for kit in server_kits(profile)}
    for kit in kits.values():
        kit.install(layout)
