"""Write (or check) schemas/sampling-policy.schema.json from the config model.

python -m pipeline.policies.schema           # rewrite the file
python -m pipeline.policies.schema --check   # exit 1 if it is stale

The file is package data of ``pipeline.schemas`` (the repository's ``schemas/`` folder,
see pyproject.toml), found with ``importlib.resources``. Rewriting it needs that package
to be a folder you can write, as in a source checkout with an editable install.
"""

from __future__ import annotations

import json
import sys
from importlib.resources import files
from pathlib import Path

from pipeline.policies.config import json_schema

SCHEMA_NAME = "sampling-policy.schema.json"
SCHEMA_PATH = files("pipeline.schemas").joinpath(SCHEMA_NAME)


def render() -> str:
    return json.dumps(json_schema(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    text = render()
    if "--check" in args:
        current = SCHEMA_PATH.read_text(encoding="utf-8") if SCHEMA_PATH.is_file() else ""
        if current != text:
            print(f"{SCHEMA_PATH} is stale: run python -m pipeline.policies.schema")
            return 1
        return 0
    if not isinstance(SCHEMA_PATH, Path):
        print(f"{SCHEMA_PATH} is not a file on disk; run this from a source checkout")
        return 1
    SCHEMA_PATH.write_text(text, encoding="utf-8")
    print(f"wrote {SCHEMA_PATH}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
