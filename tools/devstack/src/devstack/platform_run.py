"""The whole platform: the profile's servers, placement and scheduler, then every app of dapr.yaml beside its daprd."""

import copy
import os
import signal
import sys
from collections.abc import Callable, Mapping
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, Self

import httpx
import yaml

from devstack import zipkin
from devstack.identity import (
    TOKENS_DIR_VARIABLE,
    AppTokens,
    ensure_app_tokens,
    ensure_trust_root,
    tokens_dir,
    write_owner_only,
)
from devstack.layout import Layout
from devstack.processes import (
    ManagedProcess,
    argv_of,
    family,
    log,
    platform_part,
    port_open,
    released,
    wait_until,
)
from devstack.profiles import server_kits
from devstack.servers import Server, StartingServer, start_placement, start_scheduler, start_sentry


@dataclass(frozen=True)
class App:
    app_id: str
    app_port: int
    dapr_http_port: int
    dapr_grpc_port: int
    metrics_port: int

    @classmethod
    def of(cls, entry: dict[str, Any]) -> "App":
        """One app of dapr.yaml."""
        ports = (entry[name] for name in ("appPort", "daprHTTPPort", "daprGRPCPort", "metricsPort"))
        return cls(entry["appID"], *(int(port) for port in ports))

    @property
    def ports(self) -> set[int]:
        return {self.app_port, self.dapr_http_port, self.dapr_grpc_port, self.metrics_port}


@dataclass(frozen=True)
class Snapshot:
    """What it takes to start a process again as it was: its argv, environment and working directory."""

    name: str
    argv: list[str]
    env: dict[str, str]
    cwd: Path

    @classmethod
    def of(cls, name: str, pid: int) -> "Snapshot":
        proc = Path(f"/proc/{pid}")
        argv = argv_of(pid)
        env = dict(
            entry.decode(errors="replace").split("=", 1)
            for entry in (proc / "environ").read_bytes().split(b"\0")
            if b"=" in entry
        )
        return cls(name, argv, env, (proc / "cwd").resolve())


@dataclass
class RunFile:
    """dapr.yaml, rendered for one run: a component profile and the gateway's port may differ from the file's."""

    source: dict[str, Any]
    apps: list[App] = field(default_factory=list)

    @classmethod
    def load(cls, path: Path) -> "RunFile":
        source = yaml.safe_load(path.read_text())
        apps = [App.of(a) for a in source["apps"]]
        return cls(source, apps)

    def render(self, layout: Layout, profile: str, gateway_port: int, tokens: dict[str, AppTokens]) -> dict[str, Any]:
        """The run file for `dapr run -f`: each app gets its token pair in its environment (its daprd reads the same
        pair from the tokens folder)."""
        # The rendered file lives under .run/, so every path in it is made absolute.
        rendered: dict[str, Any] = copy.deepcopy(self.source)
        common = rendered["common"]
        common["resourcesPath"] = str(layout.components(profile))
        for app in rendered["apps"]:
            app["appDirPath"] = str((layout.repo / app["appDirPath"]).resolve())
            app["configFilePath"] = str((layout.repo / app["configFilePath"]).resolve())
            app["env"] = {**app.get("env", {}), **tokens[app["appID"]].environment()}
            if app["appID"] == "gateway":
                app["appPort"] = gateway_port
        self.apps = [App.of(a) for a in rendered["apps"]]
        return rendered

    def app(self, app_id: str) -> App:
        return next(a for a in self.apps if a.app_id == app_id)


def _with_changed_configurations(
    layout: Layout, rendered: dict[str, Any], folder_name: str, change: Callable[[dict[str, Any]], None]
) -> None:
    """Points each app of the rendered run file at a copy of its Configuration (in .run/<folder_name>) whose spec
    `change` has changed."""
    folder = layout.run_dir / folder_name
    folder.mkdir(parents=True, exist_ok=True)
    for app in rendered["apps"]:
        configuration = yaml.safe_load(Path(app["configFilePath"]).read_text())
        change(configuration["spec"])
        copy_path = folder / f"{app['appID']}.yaml"
        copy_path.write_text(yaml.safe_dump(configuration, sort_keys=False))
        app["configFilePath"] = str(copy_path)


def _without_mtls(layout: Layout, rendered: dict[str, Any]) -> None:
    """Each app's Configuration with mTLS and access control off."""

    def change(spec: dict[str, Any]) -> None:
        spec["mtls"]["enabled"] = False
        spec.pop("accessControl", None)

    _with_changed_configurations(layout, rendered, "configs-without-mtls", change)


def _with_spans_sent_to(layout: Layout, rendered: dict[str, Any], endpoint: str) -> None:
    """Every sidecar and app sends its spans to `endpoint` (a Zipkin on another port than the generated files say)."""

    def change(spec: dict[str, Any]) -> None:
        spec["tracing"]["zipkin"]["endpointAddress"] = endpoint

    _with_changed_configurations(layout, rendered, "configs-with-zipkin-elsewhere", change)
    rendered["common"].setdefault("env", {})["OTEL_EXPORTER_ZIPKIN_ENDPOINT"] = endpoint


def answers(url: str, statuses: tuple[int, ...] = (200, 204)) -> bool:
    """Whether `url` answers a GET with one of `statuses` within a second (False when nothing answers)."""
    try:
        return httpx.get(url, timeout=1).status_code in statuses
    except httpx.HTTPError:
        return False


class Platform:
    """Starts everything on enter and stops, in reverse order, everything it started on exit."""

    def __init__(
        self,
        layout: Layout,
        profile: str = "local",
        gateway_port: int = 8080,
        ready_timeout: float = 120,
        *,
        mtls: bool = True,
        app_environment: Mapping[str, Mapping[str, str]] | None = None,
    ):
        """`mtls=False` is for measuring what mTLS costs: no sentry, plaintext between sidecars, and no access policies
        (they name callers by their mTLS identity, so without it they would refuse every call). `app_environment`
        sets variables for some apps (by app id) on top of dapr.yaml's, as a benchmark changes a setting."""
        self.layout = layout
        self.mtls = mtls
        self.app_environment = app_environment or {}
        self.profile = profile
        self.gateway_port = gateway_port
        self.ready_timeout = ready_timeout
        self.run_file = RunFile.load(layout.run_file)
        self.tokens: dict[str, AppTokens] = {}
        self.servers: list[Server] = []
        self._apps: ManagedProcess | None = None
        self._restarted: list[ManagedProcess] = []
        # Apps killed or shut down since the last `log_marks`: their logs lead a failure report, likeliest to tell.
        self._killed_apps: set[str] = set()
        self._stack = ExitStack()

    @property
    def gateway_url(self) -> str:
        return f"http://127.0.0.1:{self.gateway_port}"

    @property
    def apps_process_pid(self) -> int | None:
        """The `dapr run -f` process: the daprd and app processes are in its session."""
        return self._apps.pid if self._apps else None

    def sidecar_url(self, app_id: str) -> str:
        return f"http://127.0.0.1:{self.run_file.app(app_id).dapr_http_port}"

    def sidecar_headers(self, app_id: str) -> dict[str, str]:
        """What a call to an app's sidecar must carry: the app's API token (the sidecar refuses any call without)."""
        return {"dapr-api-token": self.tokens[app_id].dapr_api_token}

    def sidecar_client(self, app_id: str, **options: Any) -> httpx.Client:
        """A client of the app's sidecar HTTP API, acting as that app."""
        return httpx.Client(base_url=self.sidecar_url(app_id), headers=self.sidecar_headers(app_id), **options)

    def async_sidecar_client(self, app_id: str, **options: Any) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.sidecar_url(app_id), headers=self.sidecar_headers(app_id), **options)

    def sidecar_metadata(self, app_id: str) -> dict[str, Any]:
        """What the app's sidecar says of itself: /v1.0/metadata."""
        with self.sidecar_client(app_id, timeout=5) as sidecar:
            response = sidecar.get("/v1.0/metadata")
        response.raise_for_status()
        metadata: dict[str, Any] = response.json()
        return metadata

    def __enter__(self) -> Self:
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def _start(self) -> None:
        if not self.layout.components(self.profile).is_dir():
            raise ValueError(f"no component profile {self.profile!r} under components/")
        trust = ensure_trust_root(self.layout)
        self.tokens = ensure_app_tokens(self.layout, [a.app_id for a in self.run_file.apps])
        rendered = self.run_file.render(self.layout, self.profile, self.gateway_port, self.tokens)
        if rendered["common"].get("env", {}).get("OTEL_EXPORTER_ZIPKIN_ENDPOINT") != zipkin.spans_endpoint():
            _with_spans_sent_to(self.layout, rendered, zipkin.spans_endpoint())
        if not self.mtls:
            _without_mtls(self.layout, rendered)
        for app in rendered["apps"]:
            app["env"].update(self.app_environment.get(app["appID"], {}))
        busy = [f"{a.app_id}:{p}" for a in self.run_file.apps for p in (a.app_port, a.dapr_http_port) if port_open(p)]
        if busy:
            raise RuntimeError(f"ports already in use ({', '.join(busy)}): is the platform already running?")

        for kit in server_kits(self.profile):
            self.servers.extend(kit.start(self.layout))
        if self.mtls:
            self.servers.append(start_sentry(self.layout, trust))
        for start in (start_placement, start_scheduler):
            self.servers.append(start(self.layout, trust if self.mtls else None))

        run_file = self.layout.run_dir / f"dapr.{self.profile}.yaml"
        # The rendered file holds every app's tokens: owner-only, like the tokens folder.
        write_owner_only(run_file, yaml.safe_dump(rendered, sort_keys=False).encode())
        env = {
            **os.environ,
            "DAPR_RUNTIME_PATH": str(self.layout.runtime_path),
            # Each daprd registers 127.0.0.1 as its address, so invocation never leaves loopback.
            "DAPR_HOST_IP": "127.0.0.1",
            # Every daprd trusts the root that signed sentry's issuer, and takes its app's tokens from the folder.
            "DAPR_TRUST_ANCHORS": trust.root_certificate.read_text(),
            TOKENS_DIR_VARIABLE: str(tokens_dir(self.layout)),
        }
        dapr = str(self.layout.runtime_bin / "dapr")
        log(f"starting {len(self.run_file.apps)} apps with their sidecars: dapr run -f ({self.profile} profile)")
        self._apps = ManagedProcess(
            "dapr run",
            # Every daprd logs JSON lines (the CLI passes the flag on), as the apps do: one parser reads them all.
            [dapr, "run", "--log-as-json", "-f", str(run_file)],
            self.layout.run_dir / "logs" / "dapr-run.log",
            cwd=self.layout.repo,
            env=env,
        )
        self._apps.start()
        pending = {a.app_id for a in self.run_file.apps}

        def all_healthy() -> bool:
            if self._apps is None or not self._apps.running():
                raise RuntimeError(f"dapr run exited early:\n{self._apps.tail() if self._apps else ''}")
            for app in self.run_file.apps:
                # A sidecar's /v1.0/healthz answers 204 once its components are loaded and its app is healthy.
                if app.app_id in pending and answers(f"http://127.0.0.1:{app.dapr_http_port}/v1.0/healthz"):
                    pending.discard(app.app_id)
                    log(f"  {app.app_id} is up (app :{app.app_port}, sidecar :{app.dapr_http_port})")
            return not pending and answers(f"{self.gateway_url}/readyz", (200,))

        try:
            wait_until(
                "apps and sidecars",
                all_healthy,
                self.ready_timeout,
                on_wait=lambda: log(f"  waiting for: {', '.join(sorted(pending)) or 'gateway /readyz'}"),
            )
        except (TimeoutError, RuntimeError):
            self._print_logs()
            raise
        # A server with a slow start (Zipkin's JVM) was not waited for when it started: by now it is likely up.
        for server in self.servers:
            if isinstance(server, StartingServer):
                server.wait_until_ready()

    def pid_of(self, app_id: str, part: Literal["app", "sidecar"]) -> int:
        """The pid of an app's process or of its daprd, wherever it runs now (under dapr run, or restarted)."""
        for pid in self.processes():
            try:
                if platform_part(argv_of(pid)) == (app_id, part):
                    return pid
            except OSError:
                continue  # gone meanwhile
        raise LookupError(f"no running {part} process for {app_id}")

    def processes(self) -> list[int]:
        """Every live process of the platform: the servers, placement and scheduler, `dapr run` with its daprds and
        apps, restarted ones, and whatever they started."""
        leaders = [s.process.pid for s in self.servers if s.process and s.process.pid]
        leaders += [p.pid for p in (self._apps, *self._restarted) if p is not None and p.pid is not None]
        return family(leaders)

    def kill(self, app_id: str, part: Literal["app", "sidecar"]) -> Snapshot:
        """SIGKILLs an app or its sidecar, as a crash would, and returns what `restart` needs to bring it back."""
        return self._end(app_id, part, signal.SIGKILL, "killed", within=10)

    def shut_down(self, app_id: str, part: Literal["app", "sidecar"]) -> Snapshot:
        """SIGTERMs an app or its sidecar, as a planned restart does, and waits until it has finished: a sidecar
        then leaves its consumer groups and commits what it consumed, so its successor neither waits for the broker
        to give up on it nor sees those events again. Returns what `restart` needs to bring it back."""
        return self._end(app_id, part, signal.SIGTERM, "shut down", within=30)

    def _end(
        self, app_id: str, part: Literal["app", "sidecar"], how: signal.Signals, done: str, within: float
    ) -> Snapshot:
        pid = self.pid_of(app_id, part)
        snapshot = Snapshot.of(f"{app_id}-{part}", pid)
        os.kill(pid, how)
        self._killed_apps.add(app_id)
        wait_until(f"{app_id} {part} to exit", lambda: released(pid), within)
        log(f"{done} {app_id} {part} (pid {pid})")
        return snapshot

    def restart(self, snapshot: Snapshot) -> None:
        """Starts a killed process again with the same argv, environment and working directory."""
        process = ManagedProcess(
            snapshot.name,
            snapshot.argv,
            self.layout.run_dir / "logs" / f"{snapshot.name}-restarted.log",
            cwd=snapshot.cwd,
            env=snapshot.env,
        )
        process.start()
        self._restarted.append(process)
        log(f"restarted {snapshot.name} (pid {process.pid})")

    def wait_until_ready(self, app_id: str, timeout: float = 60) -> None:
        """Until the app's /readyz answers 200 (its sidecar answers it, and whatever else the app needs is there)."""
        ready_url = f"http://127.0.0.1:{self.run_file.app(app_id).app_port}/readyz"
        wait_until(f"{app_id} to be ready", lambda: answers(ready_url, (200,)), timeout)

    def restarted_status(self) -> str:
        """Whether each process `restart` started is still running (the newest one of each name): a failure message
        that says a restarted sidecar exited at once points straight at its log."""
        newest = {process.name: process for process in self._restarted}
        return "; ".join(
            f"{name} (pid {process.pid}): "
            + ("running" if process.running() else f"exited with {process.exit_code()}, log {process.log_file.name}")
            for name, process in sorted(newest.items())
        )

    def log_files(self) -> list[Path]:
        """Every log the platform writes: each app's and daprd's (dapr run's files and those of restarted processes),
        placement's, scheduler's and the servers'."""
        return sorted({*self.layout.daprd_logs.glob("*.log"), *(self.layout.run_dir / "logs").glob("*.log")})

    def log_marks(self) -> dict[Path, int]:
        """Where each log ends now, so `logs_since` can show what was written after this moment."""
        self._killed_apps.clear()
        return {path: path.stat().st_size for path in self.log_files()}

    def logs_since(self, marks: dict[Path, int], lines: int = 25) -> str:
        """The last `lines` lines that each log gained since `marks` (logs that gained nothing are left out); the logs
        of apps killed since then come first."""
        parts = []
        killed = tuple(self._killed_apps)
        for path in sorted(self.log_files(), key=lambda path: not path.name.startswith(killed)):
            with path.open("rb") as file:
                file.seek(marks.get(path, 0))
                written = file.read().decode(errors="replace").splitlines()
            if written:
                shown = "\n".join(written[-lines:])
                parts.append(
                    f"--- {path.name}: last {min(lines, len(written))} of {len(written)} new lines ---\n{shown}"
                )
        return "\n".join(parts)

    def _print_logs(self) -> None:
        if self._apps:
            sys.stderr.write(f"--- dapr run ---\n{self._apps.tail(60)}\n")
        for daprd_log in sorted(self.layout.daprd_logs.glob("*_daprd_*.log"))[-len(self.run_file.apps) :]:
            tail = "\n".join(daprd_log.read_text(errors="replace").splitlines()[-15:])
            sys.stderr.write(f"--- {daprd_log.name} ---\n{tail}\n")

    def stop(self) -> None:
        for process in self._restarted:
            process.stop()
        self._restarted.clear()
        if self._apps is not None:
            log("stopping apps and sidecars")
            self._apps.stop()
            self._apps = None
        for server in reversed(self.servers):
            if server.process is not None:
                log(f"stopping {server.name}")
                server.process.stop()
        self.servers.clear()
