"""The `rabbitmq` profile's broker: Debian's rabbitmq-server, run as the project's own node on 127.0.0.1.

Not the Debian system service: the node (sidecart@localhost, fixed so that its mnesia directory is found again on the
next start) keeps its data, config and Erlang cookie under .run/rabbitmq and logs to .run/logs/rabbitmq.log. It is
started with the upstream script in /usr/lib/rabbitmq/bin: the /usr/sbin wrappers switch to the `rabbitmq` user when
run as root and write to /var/lib/rabbitmq.

epmd (Erlang's port mapper, which nodes and CLI tools find each other through) normally daemonizes itself out of the
process that starts it; here it runs in the foreground as a server of its own, started before the node, and the node
is told not to start one (-start_epmd false). An epmd that already answers on 4369 (systemd's epmd.socket, which
Debian's erlang-base enables, or one a system node left behind) is used instead: epmd is only a name registry.
The VM's helpers (erl_child_setup and the port programs it spawns: inet_gethost, the disk monitor's shell) put
themselves in sessions of their own, but end with the VM, even when it is killed.

SIGTERM stops the node cleanly (the start script and the VM both handle it) in about a second.

To use the CLI tools on this node (e.g. rabbitmqctl list_queues), pass the same HOME and node name:
    HOME=.run/rabbitmq RABBITMQ_NODENAME=sidecart@localhost /usr/lib/rabbitmq/bin/rabbitmqctl list_queues
"""

import os
import socket
import struct
from pathlib import Path

from devstack.install import as_root, ensure_debian_package
from devstack.layout import Layout
from devstack.processes import ManagedProcess, log, port_open
from devstack.servers import Server, start_server

# Debian bookworm's build (it pulls Erlang 25 from bookworm); an unavailable pin falls back to bookworm's current
# build (see ensure_debian_package).
RABBITMQ_PIN = "3.10.8-1.1+deb12u1"
AMQP_PORT = 5672
DIST_PORT = 25672  # Erlang distribution (CLI tools -> node), on loopback only
EPMD_PORT = 4369
NODE_NAME = "sidecart@localhost"
SCRIPTS = Path("/usr/lib/rabbitmq/bin")
SERVICE = "rabbitmq-server"

# A start takes 4-7 s on 2 cores, a fresh data dir included (most of it the VM scanning its modules), more on a busy
# machine.
READY_TIMEOUT = 120


def _stop_system_node() -> None:
    """Stops and disables the system service that installing the package starts (through invoke-rc.d) and enables.

    Stopping it after the install, rather than keeping it from starting (policy-rc.d), touches nothing but this one
    service: policy-rc.d is a single machine-wide file that would also hold back every other package installed
    meanwhile (apt runs of other profiles, the user's own), may already exist (container images ship one), and does
    not keep the service from being enabled at boot, where it would take 5672 before the project's node.
    """
    was_running = port_open(AMQP_PORT)
    # The same command the package's postinst started it with; it honours the same policy (under systemd it calls
    # systemctl). Nothing to stop when the start was denied or failed.
    as_root(["invoke-rc.d", SERVICE, "stop"])
    # Removes the boot-time start, for systemd and sysvinit alike; `update-rc.d rabbitmq-server enable` undoes it.
    as_root(["update-rc.d", SERVICE, "disable"])
    if was_running:
        # Outside systemd the system node started an epmd daemon that outlives it; `epmd -kill` refuses while a
        # node is still registered. Under systemd, epmd belongs to epmd.socket and is left alone.
        if not Path("/run/systemd/system").is_dir():
            as_root(["epmd", "-kill"])
        log(f"stopped and disabled the system {SERVICE} service that installing the package started")
    if port_open(AMQP_PORT):
        log(f"warning: something still answers on 127.0.0.1:{AMQP_PORT}; the project's node will use it instead")


def install(layout: Layout) -> None:
    server = SCRIPTS / "rabbitmq-server"
    if server.exists():
        return
    ensure_debian_package("rabbitmq-server", str(server), RABBITMQ_PIN)
    # Only when this install added the package: a system node the user set up is theirs.
    _stop_system_node()


def _env(layout: Layout, data: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RABBITMQ_", "ERL_")) and k != "XDG_CONFIG_HOME"}
    return env | {
        # The Erlang cookie is $HOME/.erlang.cookie: the node creates it there (mode 0400) on its first start, so
        # nothing in the user's home (root's included) is read or written.
        "HOME": str(data),
        "RABBITMQ_NODENAME": NODE_NAME,
        "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
        "RABBITMQ_NODE_PORT": str(AMQP_PORT),
        "RABBITMQ_DIST_PORT": str(DIST_PORT),
        # Every file the node reads or writes, so that nothing under /etc/rabbitmq or /var/lib/rabbitmq applies.
        "RABBITMQ_CONF_ENV_FILE": str(data / "rabbitmq-env.conf"),
        "RABBITMQ_CONFIG_FILE": str(data / "rabbitmq.conf"),
        "RABBITMQ_ADVANCED_CONFIG_FILE": str(data / "advanced.config"),
        "RABBITMQ_ENABLED_PLUGINS_FILE": str(data / "enabled_plugins"),
        "RABBITMQ_MNESIA_BASE": str(data / "mnesia"),
        "RABBITMQ_LOG_BASE": str(layout.run_dir / "logs"),
        "RABBITMQ_LOGS": "-",  # to standard output, that is the ManagedProcess's log file
        "ERL_CRASH_DUMP": str(layout.run_dir / "logs" / "rabbitmq-erl_crash.dump"),
        "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": "-start_epmd false -kernel inet_dist_use_interface {127,0,0,1}",
    }


def _write_config(data: Path) -> None:
    (data / "rabbitmq.conf").write_text(
        "# Written by devstack on every start (edits are lost): the `rabbitmq` profile's node.\n"
        f"listeners.tcp.default = 127.0.0.1:{AMQP_PORT}\n"
        "# The default guest/guest account (which Dapr's component uses) may only connect from loopback.\n"
        "loopback_users.guest = true\n"
    )
    # No plugins: the management UI is not needed, and the node starts faster and smaller without it.
    (data / "enabled_plugins").write_text("[].\n")


# --- Readiness: an AMQP 0-9-1 handshake up to connection.open-ok on vhost "/" -------------------------------------


def _frame(payload: bytes, frame_type: int = 1) -> bytes:
    return struct.pack(">BHI", frame_type, 0, len(payload)) + payload + b"\xce"


def _shortstr(value: bytes) -> bytes:
    return struct.pack(">B", len(value)) + value


def _longstr(value: bytes) -> bytes:
    return struct.pack(">I", len(value)) + value


def _read_method(sock: socket.socket) -> tuple[int, int, bytes]:
    """The next method frame on channel 0 (heartbeats skipped): class id, method id, arguments."""
    while True:
        header = _read_exactly(sock, 7)
        frame_type, _, size = struct.unpack(">BHI", header)
        payload = _read_exactly(sock, size + 1)[:-1]
        if frame_type == 1:
            class_id, method_id = struct.unpack(">HH", payload[:4])
            return class_id, method_id, payload[4:]


def _read_exactly(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise ConnectionError("connection closed by the broker")
        data += chunk
    return data


def amqp_ready(port: int = AMQP_PORT, user: bytes = b"guest", password: bytes = b"guest") -> bool:
    """Whether the broker accepts an AMQP connection: it logs in and opens the default vhost, not only the port."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=3) as sock:
            sock.sendall(b"AMQP\x00\x00\x09\x01")
            if _read_method(sock)[:2] != (10, 10):  # connection.start
                return False
            start_ok = (
                struct.pack(">HH", 10, 11)
                + struct.pack(">I", 0)  # client properties: empty table
                + _shortstr(b"PLAIN")
                + _longstr(b"\0" + user + b"\0" + password)
                + _shortstr(b"en_US")
            )
            sock.sendall(_frame(start_ok))
            class_id, method_id, args = _read_method(sock)
            if (class_id, method_id) != (10, 30):  # connection.tune (a refused login closes instead)
                return False
            channel_max, frame_max, _ = struct.unpack(">HIH", args[:8])
            sock.sendall(_frame(struct.pack(">HHHIH", 10, 31, channel_max, frame_max, 0)))  # tune-ok, no heartbeat
            sock.sendall(_frame(struct.pack(">HH", 10, 40) + _shortstr(b"/") + _shortstr(b"") + b"\x00"))  # open
            opened = _read_method(sock)[:2] == (10, 41)  # connection.open-ok
            sock.sendall(_frame(struct.pack(">HHH", 10, 50, 200) + _shortstr(b"") + struct.pack(">HH", 0, 0)))
            return opened
    except (OSError, struct.error):
        return False


def epmd_ready(port: int = EPMD_PORT) -> bool:
    """Whether epmd answers a NAMES request (its reply starts with its own port); a bare connect makes it log."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
            sock.sendall(b"\x00\x01n")  # length 1, NAMES_REQ
            return int.from_bytes(_read_exactly(sock, 4), "big") == port
    except OSError:
        return False


def start_epmd(layout: Layout) -> Server:
    argv = ["epmd", "-address", "127.0.0.1", "-port", str(EPMD_PORT)]  # no -daemon: stays in the foreground
    process = ManagedProcess("epmd", argv, layout.run_dir / "logs" / "epmd.log", cwd=layout.run_dir)
    return start_server("epmd", EPMD_PORT, process, 10, epmd_ready)


def start(layout: Layout) -> list[Server]:
    data = layout.run_dir / "rabbitmq"
    data.mkdir(parents=True, exist_ok=True)
    cookie = data / ".erlang.cookie"
    if cookie.exists():
        cookie.chmod(0o400)  # Erlang refuses a cookie file that others may read (e.g. after a copy of .run)
    _write_config(data)
    epmd = start_epmd(layout)
    process = ManagedProcess(
        "rabbitmq",
        [str(SCRIPTS / "rabbitmq-server")],
        layout.run_dir / "logs" / "rabbitmq.log",
        cwd=data,
        env=_env(layout, data),
    )
    try:
        node = start_server("rabbitmq", AMQP_PORT, process, READY_TIMEOUT, amqp_ready)
    except BaseException:
        # start_server leaves a node that never got ready running; nothing of this start may outlive it.
        process.stop()
        if epmd.process:
            epmd.process.stop()
        raise
    return [epmd, node]
