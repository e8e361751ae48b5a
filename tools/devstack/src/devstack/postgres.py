"""PostgreSQL for the kafka and rabbitmq profiles: Debian's server, run as the project's own cluster.

Not the system cluster the Debian package knows about ("15/main" on 5432): our own data directory under
.run/postgres, our own port on 127.0.0.1, started in the foreground as a ManagedProcess and stopped with it.
Each service gets its own database, owned by a role of the same name (database per service).
"""

import contextlib
import hashlib
import os
import pwd
import shutil
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

from devstack.install import as_root, ensure_debian_package
from devstack.layout import Layout
from devstack.processes import ManagedProcess, descendants, log, stat_fields, wait_until
from devstack.prometheus import postgres_exporter, start_exporter
from devstack.servers import Server, start_server

# Debian bookworm's build (bookworm-security); an unavailable pin falls back to bookworm's current build.
POSTGRES_PACKAGE = "postgresql-15"
POSTGRES_PIN = "15.20-0+deb12u1"
POSTGRES_BIN = Path("/usr/lib/postgresql/15/bin")
POSTGRES_PORT = 54329
SUPERUSER = "postgres"

# One database per service, owned by the role of the same name that its state store connects as.
SERVICES = ("users", "notifications", "inventory", "payments", "orders", "analytics")

# While our install runs, postgresql-common must not create (and start) its default cluster 15/main on 5432:
# `create_main_cluster = false` in a drop-in that its createcluster.conf includes, removed again afterwards.
_NO_MAIN_CLUSTER = Path("/etc/postgresql-common/createcluster.d/sidecart-no-main-cluster.conf")

# Passed on the command line (not written into postgresql.conf), so a changed value applies to an existing data dir.
SETTINGS = {
    "listen_addresses": "127.0.0.1",
    "port": str(POSTGRES_PORT),
    # Each state store's pool holds up to maxConns (10, in its component YAML) connections: 6 stores are 60, the
    # rest is headroom for psql and the superuser (the pool default, max(4, CPUs), would grow with the machine).
    "max_connections": "100",
    # Durable commits: the project tests what a crash leaves behind (synchronous_commit stays at its default, on).
    "fsync": "on",
    "full_page_writes": "on",
    "shared_buffers": "128MB",
    "logging_collector": "off",  # everything to stderr, i.e. .run/logs/postgres.log
    "cluster_name": "sidecart",  # shown in the processes' titles (ps)
}

_HBA = """\
# Written by devstack: no passwords, but only from this machine: the Unix socket in .run/postgres and 127.0.0.1
# (the only address the server listens on).
local   all   all                  trust
host    all   all   127.0.0.1/32   trust
"""


def install(layout: Layout) -> None:
    """Installs Debian's postgresql-15 unless its server binary is there; leaves no system cluster running."""
    if (POSTGRES_BIN / "postgres").exists():
        return
    with _without_main_cluster():
        ensure_debian_package(POSTGRES_PACKAGE, str(POSTGRES_BIN / "postgres"), POSTGRES_PIN)


@contextlib.contextmanager
def _without_main_cluster() -> Iterator[None]:
    as_root(["mkdir", "-p", str(_NO_MAIN_CLUSTER.parent)]).check_returncode()
    as_root(
        ["tee", str(_NO_MAIN_CLUSTER)],
        "# devstack, during its install of postgresql only\ncreate_main_cluster = false\n",
    ).check_returncode()
    try:
        yield
    finally:
        as_root(["rm", "-f", str(_NO_MAIN_CLUSTER)]).check_returncode()


def start(layout: Layout) -> list[Server]:
    """Starts the cluster on 127.0.0.1:54329 (initdb on first use), creates each service's role and database, and
    starts its Prometheus exporter."""
    owner = _server_user()
    home = _home(layout, owner)  # also the Unix socket's directory
    data = home / "data"
    home.mkdir(parents=True, exist_ok=True)
    if owner is not None:
        os.chown(home, owner.pw_uid, owner.pw_gid)
    if not (data / "PG_VERSION").exists():
        _initdb(layout, home, data, owner)
    elif owner is not None and data.stat().st_uid != owner.pw_uid:
        log(f"postgres: giving {data} to the {owner.pw_name} user")
        _chown_tree(data, owner)

    # Our own clients all use TCP; the socket is for a developer's psql -h .run/postgres. A socket path is limited
    # to 107 bytes, and a longer one would keep the server from starting: then there is no socket.
    socket_dir = str(home) if len(f"{home}/.s.PGSQL.{POSTGRES_PORT}") <= 107 else ""
    settings = {**SETTINGS, "unix_socket_directories": socket_dir}
    argv = [*_run_as(owner), str(POSTGRES_BIN / "postgres"), "-D", str(data)]
    argv += [arg for name, value in settings.items() for arg in ("-c", f"{name}={value}")]
    process = _Postmaster(layout.run_dir / "logs" / "postgres.log", argv, cwd=home, env=_env())
    # A start after a crash replays the WAL first: the timeout leaves room for that.
    server = start_server("postgres", POSTGRES_PORT, process, 120, lambda: _psql("select 1").returncode == 0)
    try:
        _create_databases()
        # Its exporter beside it: what Prometheus knows of PostgreSQL comes through it.
        return [server, start_exporter(layout, postgres_exporter(POSTGRES_PORT, SUPERUSER))]
    except BaseException:
        if server.process is not None:
            server.process.stop()
        raise


class _Postmaster(ManagedProcess):
    """The server, stopped with SIGINT: PostgreSQL's fast shutdown (sessions ended, a checkpoint, a clean data dir).

    Every process the postmaster forks calls setsid(), so ManagedProcess's signals to the group reach only the
    postmaster. It ends its children itself; if it has to be killed, the children it leaves are killed here, or
    their hold on the shared memory would keep the next start from working.
    """

    def __init__(self, log_file: Path, argv: list[str], cwd: Path, env: dict[str, str]) -> None:
        super().__init__("postgres", argv, log_file, cwd=cwd, env=env, stop_signal=signal.SIGINT)

    def stop(self, grace: float = 15.0) -> None:
        children = _children(self.pid) if self.pid else []
        super().stop(grace)
        for pid, started in children:
            if _start_time(pid) == started:  # the same process, not a later one with the reused pid
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        wait_until("postgres's processes to end", lambda: all(_start_time(p) != s for p, s in children), 10)


def _start_time(pid: int) -> int | None:
    fields = stat_fields(pid)
    return None if fields is None or fields[0] == "Z" else int(fields[19])  # state ... starttime


def _children(parent: int) -> list[tuple[int, int]]:
    """Every process below the postmaster, with its start time (so that a reused pid is never killed)."""
    found = [(pid, _start_time(pid)) for pid in descendants([parent]) if pid != parent]
    return [(pid, started) for pid, started in found if started is not None]


def _server_user() -> pwd.struct_passwd | None:
    """Who runs the server: PostgreSQL refuses root, so as root the Debian package's `postgres` system user."""
    if os.geteuid() != 0:
        return None  # a developer's own user runs it
    try:
        return pwd.getpwnam("postgres")
    except KeyError as error:
        raise RuntimeError("no `postgres` system user: is the postgresql-15 package installed?") from error


def _run_as(owner: pwd.struct_passwd | None) -> list[str]:
    # setpriv execs (no fork, unlike su/runuser): the server is the ManagedProcess itself and gets its signals.
    if owner is None:
        return []
    return ["setpriv", f"--reuid={owner.pw_uid}", f"--regid={owner.pw_gid}", "--init-groups", "--"]


def _env() -> dict[str, str]:
    # PG* variables of the caller's shell (PGPORT, PGHOST, PGUSER...) must not redirect our clients.
    return {name: value for name, value in os.environ.items() if not name.startswith("PG")}


def _home(layout: Layout, owner: pwd.struct_passwd | None) -> Path:
    """.run/postgres, unless the server's user cannot enter .run (a repository under a private /root, run as root):
    then a folder in that user's home, per repository, which .run/postgres links to (`make clean` removes both)."""
    home = layout.run_dir / "postgres"
    if (
        owner is None
        or subprocess.run([*_run_as(owner), "test", "-x", str(layout.run_dir)], check=False).returncode == 0
    ):
        return home
    outside = Path(owner.pw_dir) / "sidecart" / hashlib.sha256(str(layout.repo).encode()).hexdigest()[:12]
    if not home.is_symlink():
        log(
            f"postgres: the {owner.pw_name} user cannot enter {layout.run_dir} (a parent folder is private), so its "
            f"data goes to {outside}, linked from .run/postgres"
        )
        if home.exists():
            shutil.rmtree(home)
        outside.mkdir(parents=True, exist_ok=True)
        for folder in (outside.parent, outside):
            os.chown(folder, owner.pw_uid, owner.pw_gid)
        home.symlink_to(outside)
    return outside


def _initdb(layout: Layout, home: Path, data: Path, owner: pwd.struct_passwd | None) -> None:
    # Built next to its final place and renamed when complete, so an interrupted initdb is never mistaken for a
    # cluster (initdb may leave a partial directory behind when killed).
    partial = home / "data.initdb"
    shutil.rmtree(partial, ignore_errors=True)
    log(f"postgres: creating the cluster in {data} (first start only)")
    argv = [
        *_run_as(owner),
        str(POSTGRES_BIN / "initdb"),
        "--pgdata",
        str(partial),
        "--username",
        SUPERUSER,
        "--encoding",
        "UTF8",
        "--locale",
        "C",  # byte order, the same on every machine and glibc version (no collation changes to reindex for)
        "--auth",
        "trust",
    ]
    result = subprocess.run(argv, cwd=home, env=_env(), capture_output=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"initdb failed:\n{result.stdout.decode(errors='replace')}{result.stderr.decode()}")
    hba = partial / "pg_hba.conf"
    hba.write_text(_HBA)
    if owner is not None:
        os.chown(hba, owner.pw_uid, owner.pw_gid)
    partial.rename(data)


def _chown_tree(root: Path, owner: pwd.struct_passwd) -> None:
    os.chown(root, owner.pw_uid, owner.pw_gid)
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            os.chown(os.path.join(folder, name), owner.pw_uid, owner.pw_gid, follow_symlinks=False)


def _psql(sql: str, timeout: float = 10, variables: dict[str, str] | None = None) -> subprocess.CompletedProcess[bytes]:
    r"""Runs `sql` as the superuser over TCP (trust on 127.0.0.1); psql's own meta-commands such as \gexec work."""
    argv = [
        str(POSTGRES_BIN / "psql"),
        "--no-psqlrc",
        "--quiet",
        "--host=127.0.0.1",
        f"--port={POSTGRES_PORT}",
        f"--username={SUPERUSER}",
        "--dbname=postgres",
        "--set=ON_ERROR_STOP=1",
        *(f"--set={name}={value}" for name, value in (variables or {}).items()),
    ]
    env = {**_env(), "PGCONNECT_TIMEOUT": "2"}
    try:
        return subprocess.run(argv, input=sql.encode(), env=env, capture_output=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return subprocess.CompletedProcess(argv, 1, b"", b"psql timed out")


# Run by psql with :'services' set to the names, comma-separated. \gexec runs the statement each row spells (CREATE
# DATABASE cannot run inside a transaction, so not in a DO block).
_CREATE_DATABASES = r"""
SELECT format('CREATE ROLE %I LOGIN', name) FROM unnest(string_to_array(:'services', ',')) AS name
 WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = name) \gexec
SELECT format('CREATE DATABASE %I OWNER %I', name, name) FROM unnest(string_to_array(:'services', ',')) AS name
 WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = name) \gexec
SELECT format('REVOKE CONNECT, TEMPORARY ON DATABASE %I FROM PUBLIC', name)
  FROM unnest(string_to_array(:'services', ',')) AS name \gexec
"""


def _create_databases() -> None:
    """Each service's role and database, created when missing (the tables are the state store component's)."""
    result = _psql(_CREATE_DATABASES, timeout=60, variables={"services": ",".join(SERVICES)})
    if result.returncode != 0:
        raise RuntimeError(f"postgres: creating the services' databases failed:\n{result.stderr.decode()}")
