"""What every service means by a product's SKU: the catalogue's own rule, checked wherever a SKU comes in."""

from typing import Annotated

from pydantic import AfterValidator, StringConstraints

# 1 to 64 of A-Z a-z 0-9 . _ -: nothing that needs escaping in a URL path or a state key.
SKU_PATTERN = r"^[A-Za-z0-9._-]{1,64}$"


def not_a_dot_segment(sku: str) -> str:
    """A SKU travels in URL paths (/products/{sku}): '.' or '..' would name another path, so only dots is refused."""
    if not sku.strip("."):
        raise ValueError("a SKU cannot be only dots")
    return sku


Sku = Annotated[str, StringConstraints(pattern=SKU_PATTERN), AfterValidator(not_a_dot_segment)]
