"""Child processes the dev stack owns: started with a log file, stopped with their whole process group."""

import contextlib
import ipaddress
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal


def log(message: str) -> None:
    print(f"[devstack {time.strftime('%H:%M:%S')}] {message}", flush=True)


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.2)
        return sock.connect_ex((host, port)) == 0


def wait_until(what: str, ready: Callable[[], bool], timeout: float, on_wait: Callable[[], None] | None = None) -> None:
    """Polls `ready` until it holds; says what it waits for every few seconds; raises TimeoutError after `timeout`."""
    started = time.monotonic()
    last_said = started
    while not ready():
        now = time.monotonic()
        if now - started > timeout:
            raise TimeoutError(f"{what} not ready after {timeout:.0f} s")
        if now - last_said >= 5:
            log(f"still waiting for {what} ({now - started:.0f} s)")
            last_said = now
            if on_wait:
                on_wait()
        time.sleep(0.2)


def flag_value(argv: list[str], name: str) -> str | None:
    """The value of `name` in argv, written either as `name value` or as `name=value`."""
    for i, word in enumerate(argv):
        if word == name and i + 1 < len(argv):
            return argv[i + 1]
        if word.startswith(f"{name}="):
            return word.split("=", 1)[1]
    return None


def argv_of(pid: int) -> list[str]:
    """A process's command line from /proc (OSError once it is gone, or when it is not ours to read)."""
    return [word.decode(errors="replace") for word in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0") if word]


def platform_part(argv: list[str]) -> tuple[str, Literal["app", "sidecar"]] | None:
    """Which app a platform process serves, and as what: a daprd (`--app-id X`) is X's sidecar, `python -m X` is
    app X; anything else (a server, the dapr CLI) is None."""
    if argv and Path(argv[0]).name == "daprd" and (app_id := flag_value(argv, "--app-id")):
        return app_id, "sidecar"
    if app_id := flag_value(argv, "-m"):
        return app_id, "app"
    return None


def stat_fields(pid: int) -> list[str] | None:
    """/proc/<pid>/stat after the command name (state, ppid, pgrp, session, ...); None once the process is gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None


def cpu_seconds(pid: int) -> float | None:
    """CPU time (user + system) the process has used so far; None once it is gone."""
    fields = stat_fields(pid)
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK") if fields else None


def _live_stats() -> dict[int, list[str]]:
    pids = (int(entry.name) for entry in Path("/proc").iterdir() if entry.name.isdigit())
    return {pid: fields for pid in pids if (fields := stat_fields(pid)) is not None}


def released(pid: int) -> bool:
    """Dead, with every file it held closed: gone, or a zombie with no open file left. A zombie alone is not enough:
    the leader of a multi-threaded process (daprd, Go) shows as one while its other threads are still exiting and
    its sockets still open, and a daprd restarted then died binding its metrics port (address already in use)."""
    fields = stat_fields(pid)
    if fields is None:
        return True
    try:
        return fields[0] == "Z" and not os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return True  # reaped meanwhile


def family(leaders: Sequence[int]) -> list[int]:
    """The leaders' sessions (a ManagedProcess leads its own) and every live process below them by parent pid
    (PostgreSQL's children leave its session), from one read of /proc."""
    stats = _live_stats()
    sessions = set(leaders)
    return _below([*leaders, *(pid for pid, fields in stats.items() if int(fields[3]) in sessions)], stats)


def descendants(roots: list[int]) -> list[int]:
    """The roots and every live process below them, by parent pid."""
    return _below(roots, _live_stats())


def _below(roots: Sequence[int], stats: dict[int, list[str]]) -> list[int]:
    children: dict[int, list[int]] = {}
    for pid, fields in stats.items():
        children.setdefault(int(fields[1]), []).append(pid)
    found, pending = set(), list(roots)
    while pending:
        pid = pending.pop()
        if pid not in found:
            found.add(pid)
            pending.extend(children.get(pid, []))
    return sorted(found)


@dataclass(frozen=True)
class ListeningSocket:
    pid: int
    program: str
    protocol: str  # tcp or udp
    address: str
    port: int

    @property
    def on_loopback(self) -> bool:
        address = ipaddress.ip_address(self.address)
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        return address.is_loopback


def _proc_net_address(hex_address: str) -> str:
    """/proc/net/{tcp,udp}{,6} write an address as 32-bit words in host (little-endian) byte order."""
    raw = bytes.fromhex(hex_address)
    host_order = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
    return socket.inet_ntop(socket.AF_INET if len(raw) == 4 else socket.AF_INET6, host_order)


def listening_sockets(pids: Sequence[int]) -> list[ListeningSocket]:
    """The TCP sockets in LISTEN state and the unconnected UDP sockets that these processes hold, read from /proc
    (what `ss -ltnup` shows, without needing it installed)."""
    bound: dict[str, tuple[str, str, int]] = {}  # socket inode -> (protocol, address, port)
    for protocol, listening_state in (("tcp", "0A"), ("udp", "07")):
        for table in (Path(f"/proc/net/{protocol}"), Path(f"/proc/net/{protocol}6")):
            with contextlib.suppress(OSError):
                for line in table.read_text().splitlines()[1:]:
                    fields = line.split()
                    if fields[3] == listening_state and fields[2].endswith(":0000"):
                        address, port = fields[1].split(":")
                        bound[fields[9]] = (protocol, _proc_net_address(address), int(port, 16))
    found = []
    for pid in pids:
        try:
            fds = list(Path(f"/proc/{pid}/fd").iterdir())
            program = Path(f"/proc/{pid}/comm").read_text().strip()
        except OSError:
            continue  # gone, or not ours to read
        for fd in fds:
            try:
                link = os.readlink(fd)
            except OSError:
                continue  # closed since it was listed
            if link.startswith("socket:[") and (entry := bound.get(link[len("socket:[") : -1])):
                found.append(ListeningSocket(pid, program, *entry))
    return found


class ManagedProcess:
    """One program in its own session, so that stop() also ends whatever it started."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        log_file: Path,
        cwd: Path,
        env: dict[str, str] | None = None,
        stop_signal: signal.Signals = signal.SIGTERM,
    ):
        self.name = name
        self.stop_signal = stop_signal
        self.argv = list(argv)
        self.log_file = log_file
        self.cwd = cwd
        self.env = env
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        with self.log_file.open("ab") as out:
            self._proc = subprocess.Popen(
                self.argv,
                cwd=self.cwd,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def exit_code(self) -> int | None:
        return self._proc.poll() if self._proc else None

    def stop(self, grace: float = 15.0) -> None:
        """`stop_signal` (SIGTERM unless set) to the process group, then SIGKILL to what is left after `grace` s."""
        if self._proc is None:
            return
        pgid = self._proc.pid
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, self.stop_signal)
        try:
            self._proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            log(f"{self.name} did not stop within {grace:.0f} s: killing it")
        # The leader may be gone while its children still run: the group is the unit.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)
        self._proc.wait()
        self._proc = None

    def tail(self, lines: int = 30) -> str:
        if not self.log_file.exists():
            return ""
        return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
