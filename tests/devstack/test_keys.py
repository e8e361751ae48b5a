"""`make rotate-keys` on the local secret store's file: the keys shift by one, nothing else changes, and the file
stays owner-only. (tests/e2e/test_key_rotation.py rotates a running platform.)"""

import json
from pathlib import Path

import pytest

from devstack.catalogue import Catalogue
from devstack.install import LOCAL_SECRETS, ensure_secrets, local_secrets_file
from devstack.keys import CURRENT, NEXT, PREVIOUS, rotate, rotate_signing_keys, users_running
from devstack.layout import Layout


@pytest.fixture
def layout(tmp_path: Path) -> Layout:
    return Layout(repo=tmp_path)


def _secrets(layout: Layout) -> dict[str, str]:
    values: dict[str, str] = json.loads(local_secrets_file(layout).read_text())
    return values


def test_a_fresh_install_has_a_current_and_a_next_key_but_no_previous(layout: Layout) -> None:
    ensure_secrets(layout)
    values = _secrets(layout)
    assert values[CURRENT] != values[NEXT]
    assert PREVIOUS not in values


def test_a_rotation_shifts_the_keys_by_one_and_keeps_the_other_secrets(layout: Layout) -> None:
    ensure_secrets(layout)
    before = _secrets(layout)

    rotate_signing_keys(layout)
    after = _secrets(layout)

    assert (after[PREVIOUS], after[CURRENT]) == (before[CURRENT], before[NEXT])
    assert after[NEXT] not in (before[CURRENT], before[NEXT])
    assert "BEGIN PRIVATE KEY" in after[NEXT]
    assert {name: value for name, value in after.items() if "signing-key" not in name} == {
        name: value for name, value in before.items() if "signing-key" not in name
    }

    rotate_signing_keys(layout)
    again = _secrets(layout)
    assert (again[PREVIOUS], again[CURRENT]) == (after[CURRENT], after[NEXT])


def test_a_rotation_on_a_machine_without_secrets_makes_them_first(layout: Layout) -> None:
    rotate_signing_keys(layout)
    values = _secrets(layout)
    assert set(LOCAL_SECRETS) | {PREVIOUS} == set(values)
    assert len({values[CURRENT], values[NEXT], values[PREVIOUS]}) == 3


def test_the_rotated_file_is_owner_only_and_nothing_is_left_beside_it(layout: Layout) -> None:
    ensure_secrets(layout)
    rotate_signing_keys(layout)
    secrets_file = local_secrets_file(layout)
    assert secrets_file.stat().st_mode & 0o077 == 0
    assert list(secrets_file.parent.iterdir()) == [secrets_file]


def test_users_may_read_every_key_a_rotation_writes() -> None:
    readable = Catalogue.load(Layout.discover()).apps["users"].secrets
    assert {CURRENT, NEXT, PREVIOUS} <= set(readable)


def test_without_a_running_platform_the_rotation_says_no_restart_is_needed(
    layout: Layout, capsys: pytest.CaptureFixture[str]
) -> None:
    assert not users_running(layout)
    rotate(layout)
    assert "users is not running" in capsys.readouterr().out
