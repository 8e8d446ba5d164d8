"""schemas/sampling-policy.schema.json is generated from the model and must stay in sync."""

import json

from pipeline.policies import schema
from pipeline.policies.config import POLICY_TYPES


def test_schema_file_is_up_to_date():
    assert schema.SCHEMA_PATH.read_text(encoding="utf-8") == schema.render(), (
        "run: python -m pipeline.policies.schema"
    )
    assert schema.main(["--check"]) == 0


def test_schema_content():
    doc = json.loads(schema.render())
    assert doc["additionalProperties"] is False
    assert {"policies", "decision_wait", "max_trace_age"} <= set(doc["properties"])
    text = json.dumps(doc)
    for t in POLICY_TYPES:
        assert f'"const": "{t}"' in text
    assert '"and"' in text and '"not"' in text  # aliases, not and_/not_
    assert "and_" not in doc["$defs"]["AndPolicy"]["properties"]
