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


def test_descriptions_say_what_the_code_does():
    props = json.loads(schema.render())["properties"]
    assert "last span" in props["decision_wait"]["description"]
    assert "first span" in props["max_trace_age"]["description"]
    assert "no effect" in props["expected_new_traces_per_sec"]["description"]


def test_schema_file_is_package_data():
    from importlib.resources import files

    assert files("pipeline.schemas").joinpath(schema.SCHEMA_NAME) == schema.SCHEMA_PATH
    assert schema.SCHEMA_PATH.is_file()
