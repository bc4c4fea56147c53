"""Generate docs/run.schema.json, the JSON Schema of `aiswitch run --json`.

python -m aiswitch.coordinator.schema > docs/run.schema.json
"""

from __future__ import annotations

import json
import sys

from aiswitch.coordinator.results import RunResult


def render() -> str:
    schema = RunResult.model_json_schema(mode="serialization")
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "aiswitch run --json"
    return json.dumps(schema, indent=2, sort_keys=True) + "\n"


if __name__ == "__main__":
    sys.stdout.write(render())
