"""The JSON Schema of the scenario format, generated from the pydantic models.

Scenario files point to it (`# yaml-language-server: $schema=../scenario/scenario.schema.json`)
so that editors validate and complete them. Regenerate after changing model.py:
``python -m caas_sim.scenarios.scenario.schema`` (a test fails while the file is stale).
"""

from __future__ import annotations

import json
from pathlib import Path

from .model import Scenario

SCHEMA_FILE = Path(__file__).resolve().parent / "scenario.schema.json"


def generate() -> str:
    schema = Scenario.model_json_schema(by_alias=True)
    schema = {"$schema": "https://json-schema.org/draft/2020-12/schema",
              "$id": "https://caas-sim.dev/schemas/scenario.schema.json",
              "title": "CaaS simulator scenario", **schema}
    return json.dumps(schema, indent=2, sort_keys=False) + "\n"


def main() -> None:
    SCHEMA_FILE.write_text(generate(), encoding="utf-8")
    print(f"wrote {SCHEMA_FILE}")


if __name__ == "__main__":
    main()
