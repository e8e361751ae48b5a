"""Use cases against fake ports: unique e-mails (also under concurrency), orphan claims, failed saves, login."""

import asyncio
from datetime import timedelta
from typing import Any
from uuid import uuid4

import pytest

from sidecart_kit.state import OutcomeUnknownError, StoreUnavailableError
from users.domain import EmailTakenError, InvalidCredentialsError, User, UserNotFoundError
from users.handlers import LogIn, RegisterUser, Users

ANN = RegisterUser(email="Ann@Example.com", password="correct horse", name="Ann")


async def test_register_saves_the_user_its_claim_and_its_event(users: Users, repository: Any) -> None:
    user = await users.register(ANN)

    assert repository.users[user.id] == user
    assert user.email == "ann@example.com"
    assert user.password_hash == "hashed:correct horse"
    assert repository.claims["ann@example.com"][0].user_id == user.id
    assert [event.user_id for event in repository.events] == [user.id]


async def test_a_second_sign_up_with_the_same_email_is_refused(users: Users, repository: Any) -> None:
    await users.register(ANN)

    with pytest.raises(EmailTakenError):
        await users.register(RegisterUser(email=" ANN@example.com", password="other password", name="Imposter"))
    assert len(repository.users) == 1
    assert len(repository.events) == 1


async def test_two_concurrent_sign_ups_with_one_email_give_exactly_one_user(users: Users, repository: Any) -> None:
    results = await asyncio.gather(
        users.register(ANN),
        users.register(RegisterUser(email="ann@example.com", password="another one", name="Ann Two")),
        return_exceptions=True,
    )

    assert sorted(type(result).__name__ for result in results) == ["EmailTakenError", "User"]
    winner = next(result for result in results if isinstance(result, User))
    assert list(repository.users) == [winner.id]
    assert [event.user_id for event in repository.events] == [winner.id]


async def test_an_abandoned_claim_is_taken_over(
    users: Users, repository: Any, clock: Any, claim_grace: timedelta
) -> None:
    repository.put_claim("ann@example.com", uuid4(), claimed_at=clock.now)
    clock.advance(claim_grace.total_seconds() + 1)

    user = await users.register(ANN)

    assert repository.claims["ann@example.com"][0].user_id == user.id
    assert repository.users[user.id] == user


async def test_a_recent_claim_without_its_user_is_left_alone(
    users: Users, repository: Any, clock: Any, claim_grace: timedelta
) -> None:
    # Its sign-up may still be saving the user.
    owner = uuid4()
    repository.put_claim("ann@example.com", owner, claimed_at=clock.now)
    clock.advance(claim_grace.total_seconds() - 1)

    with pytest.raises(EmailTakenError):
        await users.register(ANN)
    assert repository.claims["ann@example.com"][0].user_id == owner


async def test_an_old_claim_whose_user_exists_is_never_taken_over(
    users: Users, repository: Any, clock: Any, claim_grace: timedelta
) -> None:
    first = await users.register(ANN)
    clock.advance(claim_grace.total_seconds() * 10)

    with pytest.raises(EmailTakenError):
        await users.register(ANN)
    assert repository.claims["ann@example.com"][0].user_id == first.id


async def test_a_failed_save_releases_the_claim_and_publishes_nothing(users: Users, repository: Any) -> None:
    repository.add_user_error = StoreUnavailableError("transaction failed")

    with pytest.raises(StoreUnavailableError):
        await users.register(ANN)
    assert repository.claims == {}
    assert repository.deleted_claims == ["ann@example.com"]
    assert repository.events == []

    repository.add_user_error = None
    user = await users.register(ANN)  # the address is free again at once
    assert repository.users[user.id] == user


async def test_a_save_with_an_unknown_outcome_keeps_the_claim(users: Users, repository: Any) -> None:
    # The transaction may still land; releasing the claim could hand its e-mail to a second user.
    repository.add_user_error = OutcomeUnknownError("timed out")

    with pytest.raises(StoreUnavailableError):
        await users.register(ANN)
    assert "ann@example.com" in repository.claims
    assert repository.deleted_claims == []


async def test_log_in_issues_a_token_for_the_right_password(users: Users) -> None:
    user = await users.register(ANN)

    token = await users.log_in(LogIn(email=" ANN@example.com ", password="correct horse"))

    assert token.access_token == f"token-for-{user.id}"


async def test_log_in_with_a_wrong_password_fails(users: Users) -> None:
    await users.register(ANN)

    with pytest.raises(InvalidCredentialsError):
        await users.log_in(LogIn(email="ann@example.com", password="wrong horse"))


async def test_log_in_with_an_unknown_email_still_checks_a_password(users: Users, passwords: Any) -> None:
    with pytest.raises(InvalidCredentialsError):
        await users.log_in(LogIn(email="nobody@example.com", password="correct horse"))
    # The hasher did its work (against its dummy hash), so the answer's timing does not tell the cases apart.
    assert passwords.verified == [None]


async def test_a_claim_without_its_user_record_is_no_user(users: Users, repository: Any, clock: Any) -> None:
    repository.put_claim("ann@example.com", uuid4(), claimed_at=clock.now)

    with pytest.raises(InvalidCredentialsError):
        await users.log_in(LogIn(email="ann@example.com", password="correct horse"))


async def test_get_finds_a_user_by_id(users: Users) -> None:
    user = await users.register(ANN)

    assert await users.get(user.id) == user
    with pytest.raises(UserNotFoundError):
        await users.get(uuid4())
