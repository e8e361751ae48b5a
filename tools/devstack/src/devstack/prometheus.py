"""Prometheus (Debian's package), on 127.0.0.1 with its data under .run/prometheus: it scrapes every app and every
sidecar of dapr.yaml, placement, scheduler, itself, and the exporters of the servers the profile runs.

Installed with `apt-get download` and `dpkg -x`-style unpacking into ~/.cache/sidecart/prometheus-<version>/root,
not with `apt-get install`: the packages' maintainer scripts start system services on every interface (Prometheus
:9090, the exporters :9121 and :9187, which is analytics' daprd metrics port) and Prometheus recommends
node-exporter. Unpacked, nothing runs, no system user is made, no root is needed (past refreshing apt's lists), and
the version is the one pinned here.

What it scrapes comes from JSON files in .run/prometheus/targets (file_sd): the apps and sidecars of dapr.yaml and
the control plane, written at each start (an app added to dapr.yaml is scraped without another edit), and one file
per exporter, written by the server kit that starts it (start_exporter) and removed when it stops.
"""

import importlib
import json
import os
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import yaml

from devstack import zipkin
from devstack.install import as_root
from devstack.layout import Layout, user_cache
from devstack.processes import ManagedProcess, log, port_open
from devstack.servers import PLACEMENT_METRICS, REDIS_PORT, SCHEDULER_METRICS, Server, start_server

# Debian bookworm's builds. Prometheus' classic web UI links its scripts and fonts from other packages (its
# Depends); unpacked beside it, the UI works. A point release may replace a pinned build: then bookworm's current
# build of that package is taken instead, and the install says so (as ensure_debian_package does).
PROMETHEUS_PIN = "2.42.0+ds-5+deb12u1"
PACKAGES: dict[str, str] = {
    "prometheus": PROMETHEUS_PIN,
    "prometheus-redis-exporter": "1.45.0-2+b4",
    "prometheus-postgres-exporter": "0.11.1-3+b5",
    "fonts-glyphicons-halflings": "1.009~3.4.1+dfsg-3+deb12u2",
    "libjs-bootstrap4": "4.6.1+dfsg1-4+deb12u1",
    "libjs-eonasdan-bootstrap-datetimepicker": "4.17.47-6",
    "libjs-jquery": "3.6.1+dfsg+~3.5.14-1",
    "libjs-jquery-hotkeys": "0~20130707+git2d51e3a9+dfsg-2.1",
    "libjs-moment": "2.29.4+ds-1",
    "libjs-moment-timezone": "0.5.40+dfsg-1+2023c",
    "libjs-mustache": "3.0.1-1",
    "libjs-popper.js": "1.16.1+ds-6",
    "libjs-rickshaw": "1.5.1.dfsg-5",
    "libjs-d3": "3.5.17-4",
}
# Left out when unpacking: moment-timezone's raw data, one JSON file per tz release (214 MB of the 218 MB it
# unpacks to; the UI loads only moment-timezone-with-data.min.js), and what only a system install uses.
NOT_UNPACKED = (
    "./usr/share/javascript/moment-timezone/data",
    "./usr/share/doc",
    "./usr/share/man",
    "./lib/systemd",
    "./etc/init.d",
    "./etc/default",
    "./etc/logrotate.d",
)

DEFAULT_PORT = 9090
PORT_VARIABLE = "PROMETHEUS_PORT"
# Often enough that a test sees a change within seconds (it waits for two scrapes at most); each scrape of the
# ~20 targets costs the platform little (see README, "See it running").
SCRAPE_INTERVAL = "5s"
# Within one run of the platform (each start begins with an empty store, see `start`): a bound all the same.
RETENTION = ("--storage.tsdb.retention.time=1d", "--storage.tsdb.retention.size=1GB")


def port() -> int:
    return int(os.environ.get(PORT_VARIABLE, DEFAULT_PORT))


def url() -> str:
    """Its UI (/graph, /targets, /alerts) and HTTP API (/api/v1/)."""
    return f"http://127.0.0.1:{port()}"


def install_dir() -> Path:
    return user_cache() / f"prometheus-{PROMETHEUS_PIN}"


def root() -> Path:
    """The unpacked packages: usr/bin/{prometheus,promtool,prometheus-*-exporter}, the web UI, its scripts."""
    return install_dir() / "root"


def binary(name: str) -> Path:
    return root() / "usr" / "bin" / name


def _stamp(home: Path) -> Path:
    """Written once every package is unpacked: the pins asked for, one `package=version` a line."""
    return home / "root.complete"


def _wanted() -> list[str]:
    return [f"{package}={version}" for package, version in PACKAGES.items()]


def _complete(home: Path) -> bool:
    stamp = _stamp(home)
    return stamp.exists() and stamp.read_text().split() == _wanted()


def install(layout: Layout) -> None:
    """Prometheus, promtool, the Redis and PostgreSQL exporters and the UI's scripts, unless this pin's are there."""
    home = install_dir()
    if _complete(home):
        return
    log(f"prometheus: downloading Debian's prometheus {PROMETHEUS_PIN}, its exporters and UI into {home} (one time)")
    # Built beside its final place and renamed when complete: an interrupted install leaves nothing half done.
    partial = home.parent / f"{home.name}.partial-{os.getpid()}"
    shutil.rmtree(partial, ignore_errors=True)
    (partial / "debs").mkdir(parents=True)
    try:
        _download(partial / "debs")
        debs = sorted((partial / "debs").glob("*.deb"))
        log(f"prometheus: unpacking {len(debs)} packages")
        (partial / "root").mkdir()
        for deb in debs:
            _unpack(deb, partial / "root")
        shutil.rmtree(partial / "debs")
        _check_runs(partial / "root" / "usr" / "bin")
        _stamp(partial).write_text("\n".join(_wanted()) + "\n")
        if _complete(home):  # another install finished meanwhile
            return
        shutil.rmtree(home, ignore_errors=True)
        partial.rename(home)
        log(f"prometheus: installed in {home}")
    finally:
        shutil.rmtree(partial, ignore_errors=True)


def _apt_download(folder: Path, packages: list[str]) -> subprocess.CompletedProcess[bytes]:
    # As root, apt cannot hand the download to its unprivileged _apt user in a folder under /root: it would warn
    # and download as root anyway, so it is told to.
    sandbox = ["-o", "APT::Sandbox::User=root"] if os.geteuid() == 0 else []
    return subprocess.run(["apt-get", *sandbox, "download", *packages], cwd=folder, capture_output=True, check=False)


def _download(folder: Path) -> None:
    if _apt_download(folder, _wanted()).returncode == 0:
        return
    # apt's lists may be missing (a fresh machine) or older than a point release: refreshed as root, as the
    # installs of the other servers do, then each package is fetched at its pin, or at bookworm's current build.
    log("prometheus: refreshing apt's package lists")
    as_root(["apt-get", "-o", "DPkg::Lock::Timeout=300", "update", "-qq"])
    for package, version in PACKAGES.items():
        if _apt_download(folder, [f"{package}={version}"]).returncode == 0:
            continue
        log(f"prometheus: {package}={version} is not offered any more; taking bookworm's current {package}")
        result = _apt_download(folder, [package])
        if result.returncode != 0:
            raise RuntimeError(f"could not download {package}:\n{result.stderr.decode(errors='replace')}")


def _unpack(deb: Path, into: Path) -> None:
    """What `dpkg -x` does (the package's files, no maintainer script), leaving out NOT_UNPACKED."""
    with subprocess.Popen(["dpkg-deb", "--fsys-tarfile", str(deb)], stdout=subprocess.PIPE) as files:
        skipped = [f"--exclude={path}" for path in NOT_UNPACKED]
        tar = subprocess.run(
            ["tar", "-x", "--no-same-owner", "-C", str(into), *skipped], stdin=files.stdout, capture_output=True
        )
    if files.returncode != 0 or tar.returncode != 0:
        raise RuntimeError(f"could not unpack {deb.name}:\n{tar.stderr.decode(errors='replace')}")


def _check_runs(bin_dir: Path) -> None:
    for name in ("prometheus", "promtool", "prometheus-redis-exporter", "prometheus-postgres-exporter"):
        if subprocess.run([bin_dir / name, "--version"], capture_output=True, check=False).returncode != 0:
            raise RuntimeError(f"the unpacked {name} does not run: {bin_dir / name} --version failed")


# --- what it scrapes -----------------------------------------------------------------------------------------


def home(layout: Layout) -> Path:
    return layout.run_dir / "prometheus"


def targets_dir(layout: Layout) -> Path:
    return home(layout) / "targets"


@dataclass(frozen=True)
class Target:
    """One scrape target on loopback, with its labels: `job` is app, sidecar or server; apps and sidecars carry
    `app_id`, servers `server`."""

    port: int
    labels: Mapping[str, str]
    metrics_path: str = "/metrics"

    def group(self) -> dict[str, Any]:
        """The target as a file_sd target group."""
        labels = {**self.labels, "__metrics_path__": self.metrics_path}
        return {"targets": [f"127.0.0.1:{self.port}"], "labels": labels}


def app_metrics_port(app_id: str, app_port: int, env: Mapping[str, str]) -> int:
    """Where an app serves /metrics: on its own port, except a public app (the gateway), which serves them only on
    its settings' metrics_port, on loopback (sidecart_kit.service). That port is read as the app reads it: its
    variable in dapr.yaml's env, else its settings' default (the one place it is written). An app without a
    `<app id>.settings` module (not built on the kit) is scraped on its own port."""
    try:
        settings = importlib.import_module(f"{app_id}.settings").Settings
    except ModuleNotFoundError as error:
        if error.name not in (app_id, f"{app_id}.settings"):
            raise
        return app_port
    variable = f"{settings.model_config.get('env_prefix', '')}METRICS_PORT".upper()
    port = env.get(variable, settings.model_fields["metrics_port"].default)
    return app_port if port is None else int(port)


def platform_targets(run_file: Path) -> list[Target]:
    """Every app and every sidecar of the run file (dapr.yaml), then placement, scheduler and Zipkin."""
    # platform_run imports profiles, which imports this module for the Redis kit's exporter.
    from devstack.platform_run import RunFile

    source = RunFile.load(run_file)
    common_env = source.source.get("common", {}).get("env", {})
    targets = []
    for entry, app in zip(source.source["apps"], source.apps, strict=True):
        # The dapr CLI gives each app the common env, then its own.
        port = app_metrics_port(app.app_id, app.app_port, {**common_env, **entry.get("env", {})})
        targets.append(Target(port, {"job": "app", "app_id": app.app_id}))
        targets.append(Target(app.metrics_port, {"job": "sidecar", "app_id": app.app_id}))
    targets.append(Target(PLACEMENT_METRICS, {"job": "server", "server": "placement"}))
    targets.append(Target(SCHEDULER_METRICS, {"job": "server", "server": "scheduler"}))
    targets.append(Target(zipkin.port(), {"job": "server", "server": "zipkin"}, metrics_path="/prometheus"))
    return targets


def write_targets(layout: Layout, name: str, targets: list[Target]) -> Path:
    """targets/<name>.json, replaced in one step: Prometheus watches the folder and may read it at any moment."""
    folder = targets_dir(layout)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.json"
    partial = path.with_suffix(".partial")
    partial.write_text(json.dumps([target.group() for target in targets], indent=2) + "\n")
    partial.replace(path)
    return path


def forget_stale_targets(layout: Layout, keep: set[Path]) -> None:
    """Removes the target files of exporters that no longer run (left by a run that was killed): their targets
    would show as down, and alert, for good."""
    for path in targets_dir(layout).glob("*.json"):
        groups = json.loads(path.read_text())
        ports = [int(address.rsplit(":", 1)[1]) for group in groups for address in group["targets"]]
        if path not in keep and not any(port_open(port) for port in ports):
            log(f"prometheus: forgetting {path.name}: nothing answers on its targets any more")
            path.unlink()


def config(layout: Layout) -> dict[str, Any]:
    """prometheus.yml: one scrape job over every target file (each target's labels name its own job), the
    repository's alerting rules."""
    return {
        "global": {
            "scrape_interval": SCRAPE_INTERVAL,
            "scrape_timeout": "4s",
            "evaluation_interval": SCRAPE_INTERVAL,
        },
        "rule_files": [str(layout.repo / "deploy" / "prometheus" / "alerts.yml")],
        "scrape_configs": [
            {
                "job_name": "sidecart",
                "file_sd_configs": [{"files": [str(targets_dir(layout) / "*.json")], "refresh_interval": "30s"}],
            }
        ],
    }


# --- starting it -----------------------------------------------------------------------------------------


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def start(layout: Layout) -> list[Server]:
    """Writes the scrape config and the platform's targets, then starts Prometheus, ready when /-/ready says so."""
    install(layout)
    data = home(layout) / "data"
    if not port_open(port()):
        # Every run's processes are new series: replaying the runs before (their series stay in memory for hours)
        # took Prometheus from 46 to 270-380 MiB at start after a day of runs. A run starts with an empty store.
        shutil.rmtree(data, ignore_errors=True)
    data.mkdir(parents=True, exist_ok=True)
    own = {
        write_targets(layout, "platform", platform_targets(layout.run_file)),
        write_targets(layout, "prometheus", [Target(port(), {"job": "server", "server": "prometheus"})]),
    }
    forget_stale_targets(layout, own)
    config_file = home(layout) / "prometheus.yml"
    config_file.write_text(yaml.safe_dump(config(layout), sort_keys=False))
    web = root() / "usr" / "share" / "prometheus" / "web"
    consoles = root() / "etc" / "prometheus"
    argv = [
        str(binary("prometheus")),
        f"--config.file={config_file}",
        f"--web.listen-address=127.0.0.1:{port()}",
        f"--storage.tsdb.path={data}",
        *RETENTION,
        # The unpacked UI: Debian's build looks for it under /usr/share and /etc, where nothing was installed.
        f"--web.local-assets={web}",
        f"--web.console.templates={consoles / 'consoles'}",
        f"--web.console.libraries={consoles / 'console_libraries'}",
        "--log.format=json",
    ]
    process = ManagedProcess("prometheus", argv, layout.run_dir / "logs" / "prometheus.log", cwd=home(layout))
    return [start_server("prometheus", port(), process, 60, lambda: _answers(f"{url()}/-/ready"))]


# --- the servers' exporters --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Exporter:
    """A server's Prometheus exporter, started by that server's kit once the server is up."""

    server: str
    program: str
    port: int
    arguments: tuple[str, ...]
    env: Mapping[str, str]


REDIS_EXPORTER_PORT = 9121
# Not the PostgreSQL exporter's default, 9187: that is analytics' daprd metrics port.
POSTGRES_EXPORTER_PORT = 9188

REDIS_EXPORTER = Exporter(
    "redis",
    "prometheus-redis-exporter",
    REDIS_EXPORTER_PORT,
    (
        f"-web.listen-address=127.0.0.1:{REDIS_EXPORTER_PORT}",
        f"-redis.addr=redis://127.0.0.1:{REDIS_PORT}",
        "-log-format=json",
    ),
    {},
)


def postgres_exporter(port: int, superuser: str) -> Exporter:
    return Exporter(
        "postgres",
        "prometheus-postgres-exporter",
        POSTGRES_EXPORTER_PORT,
        (f"--web.listen-address=127.0.0.1:{POSTGRES_EXPORTER_PORT}", "--log.format=json"),
        # The superuser over TCP, trusted on 127.0.0.1 (postgres.py's pg_hba): the statistics of every database.
        {"DATA_SOURCE_NAME": f"postgresql://{superuser}@127.0.0.1:{port}/postgres?sslmode=disable"},
    )


class _ExporterProcess(ManagedProcess):
    """An exporter whose target file goes when it stops: Prometheus then stops scraping it instead of alerting."""

    def __init__(self, layout: Layout, exporter: Exporter, target_file: Path) -> None:
        argv = [str(binary(exporter.program)), *exporter.arguments]
        log_file = layout.run_dir / "logs" / f"{exporter.program}.log"
        env = {**os.environ, **exporter.env}
        super().__init__(exporter.program, argv, log_file, cwd=layout.run_dir, env=env)
        self.target_file = target_file

    def stop(self, grace: float = 15.0) -> None:
        super().stop(grace)
        self.target_file.unlink(missing_ok=True)


def with_exporter(layout: Layout, server: Server, exporter: Exporter) -> list[Server]:
    """`server`, and its exporter started now. If the exporter fails to start, `server` is stopped here: the platform
    only learns of the servers a kit returns, so nothing else would stop it."""
    try:
        return [server, start_exporter(layout, exporter)]
    except BaseException:
        if server.process is not None:
            server.process.stop()
        raise


def start_exporter(layout: Layout, exporter: Exporter) -> Server:
    """Starts a server's exporter and lists it for Prometheus (job server, labelled with the server it speaks for)."""
    install(layout)
    target_file = write_targets(
        layout, exporter.server, [Target(exporter.port, {"job": "server", "server": exporter.server})]
    )
    process = _ExporterProcess(layout, exporter, target_file)
    metrics = f"http://127.0.0.1:{exporter.port}/metrics"
    return start_server(exporter.program, exporter.port, process, 30, lambda: _answers(metrics))
