"""`python -m devstack bench-login-burst`: what a password-guessing burst costs everyone else.

Bystanders (signed-in users on their own address, 127.0.0.3) read their profile in a closed loop through the
gateway, first for --seconds on a quiet platform, then for --seconds while an attacker on 127.0.0.1 sends
wrong-password logins for one account as fast as --attackers connections allow, from a process of its own.
Halfway through the burst the account's owner logs in from 127.0.0.2. Prints the bystanders' p50/p99 in both
phases, what the attacker got (401 from users, 429 from the gateway's limits) and whether the owner got in; writes
reports/bench-login-burst-<profile>.md.
"""

import asyncio
import multiprocessing
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from multiprocessing import Queue
from pathlib import Path

import httpx

from devstack.layout import Layout
from devstack.measures import percentile
from devstack.platform_run import Platform

BYSTANDERS = 5
PASSWORD = "bench-password"  # noqa: S105 (the benchmark's own throwaway accounts)


@dataclass
class Phase:
    name: str
    latencies_ms: list[float] = field(default_factory=list)
    statuses: Counter[int] = field(default_factory=Counter)

    def percentile(self, q: float) -> float:
        return percentile(self.latencies_ms, q)


def _client(platform: Platform, address: str) -> httpx.AsyncClient:
    transport = httpx.AsyncHTTPTransport(local_address=address, limits=httpx.Limits(keepalive_expiry=2))
    return httpx.AsyncClient(base_url=platform.gateway_url, timeout=30, transport=transport)


async def _signed_up(client: httpx.AsyncClient) -> tuple[str, dict[str, str]]:
    email = f"bench-{uuid.uuid4().hex[:12]}@example.com"
    await client.post("/api/v1/users", json={"email": email, "password": PASSWORD, "name": "Bench"})
    token = (await client.post("/api/v1/auth/token", json={"email": email, "password": PASSWORD})).json()
    return email, {"Authorization": f"Bearer {token['access_token']}"}


async def _read_profiles(client: httpx.AsyncClient, headers: dict[str, str], until: float, phase: Phase) -> None:
    while time.monotonic() < until:
        started = time.perf_counter()
        status = (await client.get("/api/v1/users/me", headers=headers)).status_code
        phase.latencies_ms.append((time.perf_counter() - started) * 1000)
        phase.statuses[status] += 1


async def _guess(client: httpx.AsyncClient, email: str, until: float, answers: Counter[int]) -> None:
    while time.monotonic() < until:
        response = await client.post("/api/v1/auth/token", json={"email": email, "password": "wrong-guess"})
        answers[response.status_code] += 1


def _attack(gateway_url: str, email: str, attackers: int, seconds: float, answers: "Queue[dict[int, int]]") -> None:
    """The attacker, in a process of its own: sharing the bystanders' event loop, its 20 clients' own work would
    delay the bystanders' timing and count as the platform's."""

    async def burst() -> Counter[int]:
        counted = Counter[int]()
        transport = httpx.AsyncHTTPTransport(local_address="127.0.0.1", limits=httpx.Limits(keepalive_expiry=2))
        async with httpx.AsyncClient(base_url=gateway_url, timeout=30, transport=transport) as client:
            until = time.monotonic() + seconds
            await asyncio.gather(*(_guess(client, email, until, counted) for _ in range(attackers)))
        return counted

    answers.put(dict(asyncio.run(burst())))


async def _owner_logs_in(platform: Platform, email: str, after: float) -> int:
    await asyncio.sleep(after)
    async with _client(platform, "127.0.0.2") as client:
        return (await client.post("/api/v1/auth/token", json={"email": email, "password": PASSWORD})).status_code


async def _bench(platform: Platform, attackers: int, seconds: float) -> tuple[Phase, Phase, Counter[int], int]:
    async with _client(platform, "127.0.0.3") as bystander, _client(platform, "127.0.0.1") as attacker:
        victim, _ = await _signed_up(attacker)  # signed up from the attacker's address, like any account
        readers = [await _signed_up(bystander) for _ in range(BYSTANDERS)]
        quiet, burst, answers = Phase("quiet"), Phase("burst"), Counter[int]()
        until = time.monotonic() + seconds
        await asyncio.gather(*(_read_profiles(bystander, headers, until, quiet) for _, headers in readers))
        counted: Queue[dict[int, int]] = multiprocessing.get_context("spawn").Queue()
        attack = multiprocessing.get_context("spawn").Process(
            target=_attack, args=(platform.gateway_url, victim, attackers, seconds, counted)
        )
        attack.start()
        await asyncio.sleep(1)  # the attacker's process is up and sending before the bystanders' clock starts
        until = time.monotonic() + seconds - 1
        _, owner_status = await asyncio.gather(
            asyncio.gather(*(_read_profiles(bystander, headers, until, burst) for _, headers in readers)),
            _owner_logs_in(platform, victim, seconds / 2),
        )
        answers.update(await asyncio.to_thread(counted.get, timeout=seconds + 60))
        await asyncio.to_thread(attack.join)
        return quiet, burst, answers, owner_status


def run(layout: Layout, profile: str, attackers: int, seconds: float) -> Path:
    with Platform(layout, profile=profile) as platform:
        quiet, burst, answers, owner_status = asyncio.run(_bench(platform, attackers, seconds))
    rows = [
        "| phase | bystander reads | p50 ms | p99 ms | answers |",
        "|---|---:|---:|---:|---|",
        *(
            f"| {p.name} | {len(p.latencies_ms)} | {p.percentile(0.5):.1f} | {p.percentile(0.99):.1f} | "
            f"{dict(sorted(p.statuses.items()))} |"
            for p in (quiet, burst)
        ),
    ]
    attempts = sum(answers.values())
    text = (
        f"# Login burst ({profile} profile)\n\n"
        f"Measured {time.strftime('%Y-%m-%d %H:%M:%S %Z')} with `make bench-login-burst` on this machine: "
        f"{BYSTANDERS} bystanders reading their profile in a closed loop, {seconds:.0f} s quiet, then {seconds:.0f} s "
        f"with {attackers} attacker connections sending wrong-password logins for one account (the attacker in "
        "a process of its own, the bystanders in another; both on the same 2 cores as the platform).\n\n"
        + "\n".join(rows)
        + "\n\n"
        f"Attacker: {attempts} attempts ({attempts / seconds:.0f}/s), answers {dict(sorted(answers.items()))}. "
        f"The owner, logging in from another address mid-burst: {owner_status}.\n"
    )
    out = layout.repo / "reports" / f"bench-login-burst-{profile}.md"
    out.parent.mkdir(exist_ok=True)
    out.write_text(text)
    print(text, flush=True)
    return out
