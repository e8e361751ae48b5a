"""Reading back the JSON documents a service keeps: one error for a document this version cannot read, whatever
is wrong with it. Plain Python (no I/O, nothing of the sidecar), so a service's domain module may use it."""

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any


class MalformedDocumentError(ValueError):
    """A stored document is not what this version wrote: retrying cannot repair it."""


@contextmanager
def fields_of(document: object, what: str) -> Iterator[Mapping[str, Any]]:
    """The fields of a stored `what` (a "wallet", say) to read in the `with` block: MalformedDocumentError when it is
    not a JSON object, or when reading it fails in any way (a missing field, a value of the wrong type)."""
    if not isinstance(document, Mapping):
        raise MalformedDocumentError(f"a {what} document is not an object")
    try:
        yield document
    except MalformedDocumentError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise MalformedDocumentError(f"malformed {what}: {exc!r}") from exc


def whole_number(fields: Mapping[str, Any], name: str, minimum: int | None = 0) -> int:
    """The integer field `name` (a JSON boolean is not one), at least `minimum` unless that is None."""
    value = fields[name]
    if not isinstance(value, int) or isinstance(value, bool) or (minimum is not None and value < minimum):
        raise MalformedDocumentError(f"{name} is not an integer >= {minimum}")
    return value
