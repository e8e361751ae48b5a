"""The one SKU rule every service checks a SKU against."""

import pytest
from pydantic import TypeAdapter, ValidationError

from contracts.products import Sku

SKU = TypeAdapter(Sku)


@pytest.mark.parametrize("sku", ["SKU-A", "a", "x" * 64, "v1.2_beta-3", ".hidden", "end."])
def test_a_sku_of_the_catalogue_is_accepted(sku: str) -> None:
    assert SKU.validate_python(sku) == sku


@pytest.mark.parametrize(
    "sku",
    [
        "",
        "x" * 65,
        ".",
        "..",
        "...",
        "a/b",
        "a b",
        " SKU",
        "SKU\n",
        "SKU\x00",
        "SKU\x7f",
        "SKÜ",
        "\uff33\uff2b\uff35",
        "%2e%2e",
    ],
)
def test_anything_else_is_refused(sku: str) -> None:
    with pytest.raises(ValidationError):
        SKU.validate_python(sku)
