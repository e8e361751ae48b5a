"""What devstack reads of its processes from /proc."""

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from devstack.processes import argv_of, listening_sockets, platform_part, released


@pytest.fixture
def open_sockets() -> Iterator[dict[str, int]]:
    """A TCP listener on loopback, one on every IPv4 interface, one on IPv6 loopback, and a bound UDP socket."""
    made = {
        "tcp 127.0.0.1": socket.socket(socket.AF_INET, socket.SOCK_STREAM),
        "tcp 0.0.0.0": socket.socket(socket.AF_INET, socket.SOCK_STREAM),
        "tcp ::1": socket.socket(socket.AF_INET6, socket.SOCK_STREAM),
        "udp 127.0.0.1": socket.socket(socket.AF_INET, socket.SOCK_DGRAM),
    }
    for name, sock in made.items():
        sock.bind((name.split()[1], 0))
        if name.startswith("tcp"):
            sock.listen()
    yield {name: sock.getsockname()[1] for name, sock in made.items()}
    for sock in made.values():
        sock.close()


def test_listening_sockets_names_each_address_and_whether_it_is_loopback(open_sockets: dict[str, int]) -> None:
    found = {(s.protocol, s.address, s.port): s for s in listening_sockets([os.getpid()])}

    expected = {name: (name.split()[0], name.split()[1], port) for name, port in open_sockets.items()}
    assert set(expected.values()) <= set(found)
    assert {name: found[key].on_loopback for name, key in expected.items()} == {
        "tcp 127.0.0.1": True,
        "tcp 0.0.0.0": False,
        "tcp ::1": True,
        "udp 127.0.0.1": True,
    }
    assert all(found[key].pid == os.getpid() for key in expected.values())


def test_a_connected_socket_is_not_listening(open_sockets: dict[str, int]) -> None:
    with socket.create_connection(("127.0.0.1", open_sockets["tcp 127.0.0.1"])) as client:
        ports = {s.port for s in listening_sockets([os.getpid()])}

        assert client.getsockname()[1] not in ports


def test_a_killed_process_is_released_once_it_holds_no_file() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        assert not released(child.pid)
        os.kill(child.pid, signal.SIGKILL)
        deadline = time.monotonic() + 5
        while not released(child.pid) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert released(child.pid)  # a zombie now (not reaped yet), with no open file
    finally:
        child.kill()
        child.wait()
    assert released(child.pid)  # gone


def test_a_platform_process_is_told_by_its_command_line() -> None:
    assert platform_part(["/x/.dapr/bin/daprd", "--app-id", "users", "--app-port", "8101"]) == ("users", "sidecar")
    assert platform_part(["/x/.dapr/bin/daprd", "--app-id=orders"]) == ("orders", "sidecar")
    assert platform_part([".venv/bin/python", "-m", "inventory"]) == ("inventory", "app")
    assert platform_part(["/x/.dapr/bin/placement", "--port", "50005"]) is None
    assert argv_of(os.getpid())[0].endswith(("python", "python3", "python3.11", "pytest"))
