"""The rules: e-mail normalisation, new users, their event, and when an e-mail claim counts as abandoned."""

from datetime import UTC, datetime, timedelta
from uuid import uuid4

from contracts.users import normalise_email
from users.domain import EmailClaim, User

NOW = datetime(2026, 1, 1, tzinfo=UTC)
GRACE = timedelta(seconds=30)
HASH = "$argon2id$stand-in"


def test_emails_are_trimmed_and_lower_cased() -> None:
    assert normalise_email("  Ann.Lee@Example.COM \n") == "ann.lee@example.com"


def test_a_registered_user_gets_a_fresh_id_and_a_normalised_email() -> None:
    first = User.register(email="Ann@Example.com", name=" Ann ", password_hash=HASH, now=NOW)
    second = User.register(email="ann@example.com", name="Ann", password_hash=HASH, now=NOW)

    assert first.id != second.id
    assert (first.email, first.name, first.created_at) == ("ann@example.com", "Ann", NOW)


def test_the_registered_event_carries_the_user_but_not_the_password_hash() -> None:
    user = User.register(email="ann@example.com", name="Ann", password_hash=HASH, now=NOW)

    event = user.registered_event()

    assert (event.user_id, event.email, event.name, event.registered_at) == (user.id, user.email, "Ann", NOW)
    assert HASH not in event.model_dump_json()


def test_a_claim_is_abandoned_only_without_its_user_and_after_the_grace() -> None:
    claim = EmailClaim(email="ann@example.com", user_id=uuid4(), claimed_at=NOW)
    later = NOW + GRACE + timedelta(seconds=1)

    assert claim.is_abandoned(owner_exists=False, now=later, grace=GRACE)
    assert not claim.is_abandoned(owner_exists=True, now=later, grace=GRACE)
    assert not claim.is_abandoned(owner_exists=False, now=NOW + GRACE, grace=GRACE)
