"""Write (or check) schemas/sampling-policy.schema.json from the config model.

python -m pipeline.policies.schema           # rewrite the file
python -m pipeline.policies.schema --check   # exit 1 if it is stale
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from pipeline.policies.config import json_schema

SCHEMA_PATH = Path(__file__).resolve().parents[2] / "schemas" / "sampling-policy.schema.json"


def render() -> str:
    return json.dumps(json_schema(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    text = render()
    if "--check" in args:
        current = SCHEMA_PATH.read_text(encoding="utf-8") if SCHEMA_PATH.exists() else ""
        if current != text:
            print(f"{SCHEMA_PATH} is stale: run python -m pipeline.policies.schema")
            return 1
        return 0
    SCHEMA_PATH.write_text(text, encoding="utf-8")
    print(f"wrote {SCHEMA_PATH}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
