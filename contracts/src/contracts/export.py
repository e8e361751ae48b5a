"""Writes the JSON Schema of every event and API contract to contracts/schemas (`python -m contracts.export`).

With --check it writes nothing and exits 1 when the committed schemas differ from the models, so an unreviewed
contract change fails CI.
"""

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from contracts.api import ErrorResponse
from contracts.catalog import EVENTS

SCHEMA_DIR = Path(__file__).resolve().parents[2] / "schemas"


def render_schemas() -> dict[str, str]:
    """File name -> JSON text for every contract."""
    schemas: dict[str, dict[str, Any]] = {}
    for event in EVENTS:
        schema = event.model_json_schema()
        schema["$id"] = f"urn:sidecart:event:{event.TYPE}"
        schema["x-cloudevent-type"] = event.TYPE
        schema["x-topic"] = event.TOPIC
        if event.FACT_KEY:
            schema["x-fact-key"] = list(event.FACT_KEY)
        schemas[f"{event.TYPE}.json"] = schema
    error_schema = ErrorResponse.model_json_schema()
    error_schema["$id"] = "urn:sidecart:api:error"
    schemas["api.error.json"] = error_schema
    return {name: json.dumps(schema, indent=2, sort_keys=True) + "\n" for name, schema in schemas.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="compare instead of writing")
    args = parser.parse_args(argv)
    rendered = render_schemas()
    if args.check:
        stale = sorted(
            name
            for name, text in rendered.items()
            if not (SCHEMA_DIR / name).exists() or (SCHEMA_DIR / name).read_text() != text
        )
        extra = sorted({p.name for p in SCHEMA_DIR.glob("*.json")} - set(rendered))
        for name in stale + extra:
            sys.stderr.write(f"contracts/schemas/{name} is out of date: run `make schemas` and review the diff\n")
        return 1 if stale or extra else 0
    SCHEMA_DIR.mkdir(exist_ok=True)
    for name, text in rendered.items():
        (SCHEMA_DIR / name).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
