"""The catalogue (deploy/catalogue.yaml): every app declared once. dapr.yaml and each app's Dapr Configuration are
generated from it; the component scopes and topic grants of every profile are checked against it."""

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

import yaml

from devstack.layout import Layout

# Dapr's namespace under `dapr run` ("default"); on Kubernetes, the app's namespace. It prefixes the outbox's
# internal topic and is part of every SPIFFE id an access policy names.
NAMESPACE = "default"
# The trust domain of every app's SPIFFE identity (spiffe://<domain>/ns/<namespace>/<app id>): Dapr's default, which the
# sidecars under `dapr run` request from sentry.
TRUST_DOMAIN = "public"
SECRET_STORE = "secretstore"  # noqa: S105 (the secret store component's name)
GENERATED = "# Generated from deploy/catalogue.yaml by `make generate`: edit the catalogue, not this file.\n"


@dataclass(frozen=True)
class Operation:
    verb: str
    path: str

    @classmethod
    def parse(cls, text: str) -> Self:
        verb, path = text.split()
        return cls(verb.upper(), path)


@dataclass(frozen=True)
class AppEntry:
    app_id: str
    port: int
    http_port: int
    grpc_port: int
    metrics_port: int
    public: bool = False
    state_store: str | None = None
    publishes: tuple[str, ...] = ()
    subscribes: tuple[str, ...] = ()
    outbox: bool = False
    secrets: tuple[str, ...] = ()
    calls: dict[str, tuple[Operation, ...]] = field(default_factory=dict)

    @classmethod
    def of(cls, app_id: str, entry: dict[str, Any]) -> Self:
        sidecar = entry["sidecar"]
        return cls(
            app_id,
            int(entry["port"]),
            int(sidecar["http"]),
            int(sidecar["grpc"]),
            int(sidecar["metrics"]),
            public=bool(entry.get("public", False)),
            state_store=entry.get("state_store"),
            publishes=tuple(entry.get("publishes", ())),
            subscribes=tuple(entry.get("subscribes", ())),
            outbox=bool(entry.get("outbox", False)),
            secrets=tuple(entry.get("secrets", ())),
            calls={callee: tuple(Operation.parse(op) for op in ops) for callee, ops in entry.get("calls", {}).items()},
        )

    @property
    def outbox_topics(self) -> tuple[str, ...]:
        """The outbox's internal topics, which the app's own sidecar publishes and subscribes."""
        return tuple(f"{NAMESPACE}{self.app_id}{topic}outbox" for topic in self.publishes) if self.outbox else ()

    @property
    def published_topics(self) -> tuple[str, ...]:
        return self.publishes + self.outbox_topics


@dataclass(frozen=True)
class Catalogue:
    apps: dict[str, AppEntry]

    @classmethod
    def load(cls, layout: Layout) -> Self:
        source = yaml.safe_load((layout.repo / "deploy" / "catalogue.yaml").read_text())
        return cls({app_id: AppEntry.of(app_id, entry) for app_id, entry in source["apps"].items()})

    def callers_of(self, callee: str) -> dict[str, tuple[Operation, ...]]:
        return {app.app_id: app.calls[callee] for app in self.apps.values() if callee in app.calls}

    def topics(self) -> list[str]:
        """Every topic that exists, in a stable order."""
        seen: dict[str, None] = {}
        for app in self.apps.values():
            seen |= dict.fromkeys(app.publishes)
        for app in self.apps.values():
            seen |= dict.fromkeys(app.subscribes)
        for app in self.apps.values():
            seen |= dict.fromkeys(app.outbox_topics)
        return list(seen)

    def publishing_scopes(self) -> dict[str, tuple[str, ...]]:
        return {a.app_id: a.published_topics for a in self.apps.values() if a.published_topics}

    def subscription_scopes(self) -> dict[str, tuple[str, ...]]:
        return {a.app_id: a.subscribes for a in self.apps.values() if a.subscribes}

    def pubsub_apps(self) -> list[str]:
        return [a.app_id for a in self.apps.values() if a.published_topics or a.subscribes]

    def secret_readers(self) -> list[str]:
        return [a.app_id for a in self.apps.values() if a.secrets]


def _segments(path: str) -> list[str]:
    return [segment for segment in path.split("/") if segment]


def _is_wildcard(path: str) -> bool:
    return path.endswith(("/*", "/**"))


def dapr_operations(operations: tuple[Operation, ...]) -> dict[str, set[str]]:
    """The verbs allowed per path, as Dapr 1.18 can enforce them. Its matcher stops at the first declared path on
    the way down (a declared `/users` decides for `/users/42` too; one ending in `/*` does not), so a path below
    another declared one is folded into it: its verbs are then allowed on the shorter path's whole subtree. The
    end-to-end matrix shows what each caller really gets."""
    verbs: dict[str, set[str]] = {}
    for operation in operations:
        verbs.setdefault(operation.path, set()).add(operation.verb)
    folded: dict[str, set[str]] = {}
    for path in sorted(verbs, key=lambda p: len(_segments(p))):
        parts = _segments(path)
        ancestor = next(
            (o for o in folded if not _is_wildcard(o) and _segments(o) == parts[: len(_segments(o))]),
            None,
        )
        folded.setdefault(ancestor or path, set()).update(verbs[path])
    return {path: folded[path] for path in verbs if path in folded}


def app_configuration(catalogue: Catalogue, app: AppEntry, base: dict[str, Any]) -> dict[str, Any]:
    """The app's Dapr Configuration: the shared base, plus who may call which of its operations and which secrets
    its sidecar may read. Default deny for both."""
    configuration = copy.deepcopy(base)
    configuration["metadata"] = {"name": app.app_id}
    spec = configuration["spec"]
    spec["accessControl"] = {
        "defaultAction": "deny",
        "trustDomain": TRUST_DOMAIN,
        "policies": [
            {
                "appId": caller,
                "defaultAction": "deny",
                "trustDomain": TRUST_DOMAIN,
                "namespace": NAMESPACE,
                "operations": [
                    {"name": path, "httpVerb": sorted(verbs), "action": "allow"}
                    for path, verbs in dapr_operations(operations).items()
                ],
            }
            for caller, operations in catalogue.callers_of(app.app_id).items()
        ],
    }
    spec["secrets"] = {
        "scopes": [{"storeName": SECRET_STORE, "defaultAccess": "deny", "allowedSecrets": list(app.secrets)}]
    }
    return configuration


def run_file(catalogue: Catalogue, common: dict[str, Any]) -> dict[str, Any]:
    """dapr.yaml: the shared settings, and each app beside its daprd with its own Configuration."""
    return {
        "version": 1,
        "common": common,
        "apps": [
            {
                "appID": app.app_id,
                "appDirPath": ".",
                "configFilePath": f"./deploy/dapr/apps/{app.app_id}.yaml",
                "appPort": app.port,
                "daprHTTPPort": app.http_port,
                "daprGRPCPort": app.grpc_port,
                "metricsPort": app.metrics_port,
                "command": [".venv/bin/python", "-m", app.app_id],
            }
            for app in catalogue.apps.values()
        ],
    }


RUN_FILE_HEADER = """\
# `dapr run -f dapr.yaml` starts every app beside its own daprd. `make run` starts the servers, placement, scheduler
# and sentry first and gives each app and sidecar its API tokens; swap brokers and stores by pointing resourcesPath
# at another components/<profile>.
"""

COMMON = {
    "resourcesPath": "./components/local",
    "placementHostAddress": "127.0.0.1:50005",
    "schedulerHostAddress": "127.0.0.1:50006",
    "appProtocol": "http",
    "apiListenAddresses": "127.0.0.1",
    "enableAppHealthCheck": True,
    "appHealthCheckPath": "/healthz",
    "appHealthProbeInterval": 2,
    # Five failed probes (about 10 s) before the sidecar pauses the app's subscriptions: pausing cancels the
    # deliveries in flight, and on RabbitMQ those sat unacknowledged for minutes. An app that restarts in a few
    # seconds (3-5 s here under load) gets its events from the retries instead (event-retry: at least 7.75 s).
    "appHealthThreshold": 5,
    "logLevel": "info",
    "daprdLogDestination": "file",
    "appLogDestination": "fileAndConsole",
}


def tracing_environment(base: dict[str, Any]) -> dict[str, str]:
    """Every app's tracing settings (the kit's OpenTelemetry): it sends its spans where the sidecars send theirs (the
    base Configuration's Zipkin endpoint), and keeps every trace it starts. Only the gateway starts traces for
    clients; every app below it keeps a trace when its caller kept it. An app's own `env` (a benchmark's) wins."""
    return {
        "OTEL_EXPORTER_ZIPKIN_ENDPOINT": base["spec"]["tracing"]["zipkin"]["endpointAddress"],
        "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
        "OTEL_TRACES_SAMPLER_ARG": "1",
    }


def _dump(document: dict[str, Any]) -> str:
    return yaml.safe_dump(document, sort_keys=False, width=120)


def generated_files(layout: Layout) -> dict[Path, str]:
    """Every file generated from the catalogue, by path, with the text it must have."""
    catalogue = Catalogue.load(layout)
    base = yaml.safe_load((layout.repo / "deploy" / "dapr" / "config.yaml").read_text())
    common = {**COMMON, "env": tracing_environment(base)}
    files = {layout.run_file: RUN_FILE_HEADER + GENERATED + _dump(run_file(catalogue, common))}
    for app in catalogue.apps.values():
        files[layout.repo / "deploy" / "dapr" / "apps" / f"{app.app_id}.yaml"] = GENERATED + _dump(
            app_configuration(catalogue, app, base)
        )
    return files


def generate(layout: Layout) -> list[Path]:
    """Writes every generated file that differs from what it must be; returns those written."""
    written = []
    for path, text in generated_files(layout).items():
        if not path.exists() or path.read_text() != text:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            written.append(path)
    return written
