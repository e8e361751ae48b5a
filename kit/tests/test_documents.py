"""Reading stored documents back: whatever is wrong with one, it is MalformedDocumentError."""

from typing import Any

import pytest

from sidecart_kit.documents import MalformedDocumentError, fields_of, whole_number


def read_count(document: object) -> int:
    with fields_of(document, "counter") as fields:
        return whole_number(fields, "count", minimum=1)


def test_a_well_formed_document_is_read() -> None:
    assert read_count({"count": 3}) == 3


@pytest.mark.parametrize(
    ("document", "problem"),
    [
        ([1], "a counter document is not an object"),
        ({}, "malformed counter: KeyError('count')"),
        ({"count": True}, "count is not an integer >= 1"),
        ({"count": 0}, "count is not an integer >= 1"),
    ],
)
def test_anything_wrong_is_a_malformed_document(document: Any, problem: str) -> None:
    with pytest.raises(MalformedDocumentError, match=problem.replace("(", r"\(").replace(")", r"\)")):
        read_count(document)


def test_no_minimum_takes_any_integer() -> None:
    assert whole_number({"delta": -5}, "delta", minimum=None) == -5
