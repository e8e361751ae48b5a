"""`python -m devstack bench-login-burst`: what a password-guessing burst costs everyone else.

Bystanders (signed-in users on their own address, 127.0.0.3) read their profile through the gateway at a fixed rate
(open loop, --bystander-rate per second), first for --seconds on a quiet platform, then for --seconds while an
attacker on 127.0.0.1 sends wrong-password logins for one account in a tight loop: --attackers connections, each
sending its next guess as soon as the answer to the last one arrives. Both are vegeta, each in a process of its
own, so neither's client work is counted as the platform's. Halfway through the burst the account's owner logs in
from 127.0.0.2. Prints the bystanders' p50/p99 in both phases, what the attacker got (401 from users, 429 from the
gateway's limits) and whether the owner got in; writes reports/bench-login-burst-<profile>.md.
"""

import json
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from devstack.layout import Layout
from devstack.load import VEGETA_VERSION, LoadResult, Request, attack, ensure_vegeta
from devstack.platform_run import Platform

BYSTANDERS = 5
PASSWORD = "bench-password"  # noqa: S105 (the benchmark's own throwaway accounts)


def _client(platform: Platform, address: str) -> httpx.Client:
    transport = httpx.HTTPTransport(local_address=address)
    return httpx.Client(base_url=platform.gateway_url, timeout=30, transport=transport)


def _signed_up(client: httpx.Client) -> tuple[str, str]:
    """A new account: its e-mail and an access token."""
    email = f"bench-{uuid.uuid4().hex[:12]}@example.com"
    client.post("/api/v1/users", json={"email": email, "password": PASSWORD, "name": "Bench"}).raise_for_status()
    token = client.post("/api/v1/auth/token", json={"email": email, "password": PASSWORD})
    token.raise_for_status()
    return email, str(token.json()["access_token"])


def _owner_logs_in(platform: Platform, email: str, after: float) -> int:
    time.sleep(after)
    with _client(platform, "127.0.0.2") as client:
        return client.post("/api/v1/auth/token", json={"email": email, "password": PASSWORD}).status_code


def _bench(
    platform: Platform, vegeta: Path, attackers: int, bystander_rate: int, seconds: float
) -> tuple[LoadResult, LoadResult, LoadResult, int]:
    with _client(platform, "127.0.0.1") as attacker_side, _client(platform, "127.0.0.3") as bystander_side:
        victim, _ = _signed_up(attacker_side)  # signed up from the attacker's address, like any account
        tokens = [_signed_up(bystander_side)[1] for _ in range(BYSTANDERS)]
    reads = [
        Request("GET", f"{platform.gateway_url}/api/v1/users/me", {"Authorization": f"Bearer {t}"}) for t in tokens
    ]
    guess = Request(
        "POST",
        f"{platform.gateway_url}/api/v1/auth/token",
        {"content-type": "application/json"},
        json.dumps({"email": victim, "password": "wrong-guess"}).encode(),
    )
    attack(vegeta, reads, rate=bystander_rate, seconds=2, local_address="127.0.0.3")  # warm-up
    quiet = attack(vegeta, reads, rate=bystander_rate, seconds=seconds, local_address="127.0.0.3")
    with ThreadPoolExecutor(2) as pool:
        # The burst starts a second before the bystanders' clock and ends a second after it.
        burst = pool.submit(attack, vegeta, [guess], 0, seconds + 2, attackers, "127.0.0.1")
        time.sleep(1)
        owner = pool.submit(_owner_logs_in, platform, victim, seconds / 2)
        during = attack(vegeta, reads, rate=bystander_rate, seconds=seconds, local_address="127.0.0.3")
        return quiet, during, burst.result(), owner.result()


def run(layout: Layout, profile: str, attackers: int, seconds: float, bystander_rate: int = 50) -> Path:
    vegeta = ensure_vegeta()
    with Platform(layout, profile=profile) as platform:
        quiet, during, guesses, owner_status = _bench(platform, vegeta, attackers, bystander_rate, seconds)
    rows = [
        "| phase | bystander reads | avg ms | p50 ms | p99 ms | answers |",
        "|---|---:|---:|---:|---:|---|",
        *(
            f"| {name} | {r.requests} | {r.mean_ms:.1f} | {r.p50_ms:.1f} | {r.p99_ms:.1f} | {r.statuses} |"
            for name, r in (("quiet", quiet), ("during the burst", during))
        ),
    ]
    text = (
        f"# Login burst ({profile} profile)\n\n"
        f"Measured {time.strftime('%Y-%m-%d %H:%M:%S %Z')} with `make bench-login-burst` on this machine: "
        f"{BYSTANDERS} bystanders reading their profile at {bystander_rate}/s in all (open loop), {seconds:.0f} s "
        f"quiet, then {seconds:.0f} s while {attackers} attacker connection(s) send wrong-password logins for one "
        f"account in a tight loop. Load from vegeta {VEGETA_VERSION}, the attacker and the bystanders each in a "
        "process of their own, on the same 2 cores as the platform.\n\n" + "\n".join(rows) + "\n\n"
        f"Attacker: {guesses.requests} attempts ({guesses.requests / guesses.seconds:.0f}/s), answers "
        f"{guesses.statuses}. The owner, logging in from another address mid-burst: {owner_status}.\n"
    )
    out = layout.repo / "reports" / f"bench-login-burst-{profile}.md"
    out.parent.mkdir(exist_ok=True)
    out.write_text(text)
    print(text, flush=True)
    return out
