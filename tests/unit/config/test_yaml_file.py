"""The one YAML layer: errors, loading, validation, and the same messages for every file kind."""

from __future__ import annotations

import inspect
import re
import textwrap
from pathlib import Path

import pytest
import yaml
from pydantic import Field, ValidationError

from pipeline.config import models, yaml_file
from pipeline.config.models import StrictModel
from pipeline.config.yaml_file import (
    ConfigError,
    ConfigProblem,
    compose_mapping,
    compose_yaml,
    read_config_file,
    to_config_error,
    validate_node,
)
from pipeline.gateway.redaction import load_redaction_config
from pipeline.loadgen.topology import load_topology
from pipeline.policies.config import load_policy_file

# --------------------------------------------------------------------------- the old names


def test_each_name_lives_in_one_module():
    """Files and errors in yaml_file, model pieces in models: no name is offered by both."""
    for name in (
        "ConfigError",
        "compose_yaml",
        "to_config_error",
        "child_node",
        "node_position",
        "format_path",
        "read_config_file",
        "validate_node",
    ):
        assert name in yaml_file.__all__, name
    for name in (
        "StrictModel",
        "parse_duration",
        "custom_error",
        "describe_value",
        "Duration",
        "NonEmptyStr",
    ):
        assert hasattr(models, name), name
        assert name not in yaml_file.__all__, name
    # the parameters callers pass keep their names and order (new ones are keyword-only)
    params = inspect.signature(to_config_error).parameters
    assert list(params)[:5] == ["exc", "root", "source", "prefix", "message"]
    assert params["limit"].kind is inspect.Parameter.KEYWORD_ONLY
    assert params["limit"].default == 1
    assert list(inspect.signature(ConfigError).parameters)[:7] == [
        "source",
        "message",
        "line",
        "column",
        "field",
        "more",
        "also",
    ]


# --------------------------------------------------------------------------- ConfigError


def test_config_error_text():
    assert str(ConfigError("f.yaml", "cannot read: gone")) == "f.yaml: cannot read: gone"
    e = ConfigError("f.yaml", "bad", line=3, column=7, field="a.b[2]")
    assert str(e) == "f.yaml:3:7: a.b[2]: bad"
    assert (e.source, e.line, e.column, e.field, e.message, e.more) == (
        "f.yaml",
        3,
        7,
        "a.b[2]",
        "bad",
        0,
    )
    assert isinstance(e, ValueError)
    assert str(ConfigError("f.yaml", "bad", line=1, column=1, more=2)).endswith(
        "(and 2 more errors)"
    )


def test_config_error_lists_further_problems_one_a_line():
    second = ConfigProblem("f.yaml", "worse", 5, 1, "c")
    e = ConfigError("f.yaml", "bad", line=3, column=7, field="a", also=[second], more=1)
    assert str(e) == "f.yaml:3:7: a: bad\nf.yaml:5:1: c: worse (and 1 more error)"
    assert e.problems == (ConfigProblem("f.yaml", "bad", 3, 7, "a"), second)


# --------------------------------------------------------------------------- loading


def test_read_config_file(tmp_path):
    path = tmp_path / "x.yaml"
    path.write_text("a: 1\n", encoding="utf-8")
    assert read_config_file(path) == "a: 1\n"
    with pytest.raises(ConfigError, match=r"absent\.yaml: cannot read: No such file"):
        read_config_file(tmp_path / "absent.yaml")
    path.write_bytes(b"\xff\xfe")
    with pytest.raises(ConfigError, match="not UTF-8"):
        read_config_file(path)


def test_compose_yaml_keeps_lines_and_refuses_duplicates_at_any_depth():
    root, data = compose_yaml("a:\n  b: 1\n", "f.yaml")
    assert data == {"a": {"b": 1}} and isinstance(root, yaml.MappingNode)
    assert compose_yaml("# nothing\n", "f.yaml") == (None, None)
    with pytest.raises(ConfigError) as caught:
        compose_yaml("a:\n  b: 1\n  c: 2\n  b: 3\n", "f.yaml")
    assert str(caught.value) == "f.yaml:4:3: duplicate key 'b' (first at line 2)"
    with pytest.raises(ConfigError, match=r"^f\.yaml:2:1: invalid YAML: "):
        compose_yaml("a: [1\n", "f.yaml")


def test_compose_mapping():
    root, data = compose_mapping("a: 1\n", "f.yaml", empty="empty!", expected="a:")
    assert data == {"a": 1} and root is not None
    with pytest.raises(ConfigError) as caught:
        compose_mapping("", "f.yaml", empty="the file is empty; expected x", expected="a:")
    assert str(caught.value) == "f.yaml: the file is empty; expected x"
    with pytest.raises(ConfigError) as caught:
        compose_mapping("\n- 1\n", "f.yaml", empty="", expected="a:, b:")
    assert str(caught.value) == "f.yaml:2:1: expected a mapping at the top (a:, b:), got a list"


class _Inner(StrictModel):
    size: int = Field(0, ge=0)


class _Outer(StrictModel):
    name: str
    items: list[_Inner] = Field(default_factory=list)


_BAD = textwrap.dedent(
    """\
    name: 5
    items:
      - {size: -1}
      - {size: big}
      - {size: 2}
      - {size: -3}
    """
)


def _validate(text: str, **kw):
    root, data = compose_mapping(text, "f.yaml", empty="empty", expected="name:")
    return validate_node(_Outer, data, root, "f.yaml", **kw)


def test_validate_node_lists_every_problem_topmost_first():
    with pytest.raises(ConfigError) as caught:
        _validate(_BAD)
    assert str(caught.value) == (
        "f.yaml:1:7: name: expected a string, got 5\n"
        "f.yaml:3:12: items[0].size: must be greater than or equal to 0, got -1\n"
        "f.yaml:4:12: items[1].size: expected an integer, got 'big'\n"
        "f.yaml:6:12: items[3].size: must be greater than or equal to 0, got -3"
    )
    e = caught.value
    assert (e.line, e.column, e.field, e.more) == (1, 7, "name", 0)
    assert [p.line for p in e.problems] == [1, 3, 4, 6]


def test_validate_node_limit_and_prefix():
    with pytest.raises(ConfigError) as caught:
        _validate(_BAD, limit=2)
    assert str(caught.value).splitlines()[-1].endswith("got -1 (and 2 more errors)")
    root, data = compose_yaml("outer:\n  name: x\n  extra: 1\n", "f.yaml")
    _, node = yaml_file.child_node(root, "outer")
    with pytest.raises(ConfigError) as caught:
        validate_node(_Outer, data["outer"], node, "f.yaml", ("outer",))
    assert str(caught.value).startswith("f.yaml:3:3: outer.extra: unknown key 'extra'")
    assert _validate("name: ok\nitems: [{size: 1}]\n") == _Outer(name="ok", items=[_Inner(size=1)])


def test_to_config_error_names_the_first_problem_by_default():
    root, data = compose_yaml(_BAD, "f.yaml")
    with pytest.raises(ValidationError) as caught:
        _Outer.model_validate(data)
    e = to_config_error(caught.value, root, "f.yaml")
    assert str(e) == "f.yaml:1:7: name: expected a string, got 5 (and 3 more errors)"
    assert e.more == 3 and e.also == ()


# --------------------------------------------------------------- every kind of file, alike

_TOPOLOGY = """\
name: small
entry_points:
  - {service: web, operation: "GET /"}
services:
  web:
    operations:
      "GET /":
        latency: {median: 2ms}
"""

# kind: (loader, a valid file, a key of the wrong type there, a wrong value, what is said)
KINDS = {
    "policy": (
        load_policy_file,
        "policies:\n  - {name: a, type: always_sample}\n",
        "num_traces",
        "lots",
        "expected an integer, got 'lots'",
    ),
    "redaction": (
        load_redaction_config,
        "allow_all_keys: true\nsummary: info\n",
        "allowed_keys",
        "5",
        "expected a list, got 5",
    ),
    "topology": (
        load_topology,
        _TOPOLOGY,
        "environment",
        "5",
        "expected a string, got 5",
    ),
}


def _error(kind: str, tmp_path: Path, text: str | None) -> tuple[str, str]:
    load = KINDS[kind][0]
    path = tmp_path / (f"{kind}.yaml" if text is not None else "absent.yaml")
    if text is not None:
        path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load(path)
    return str(path), str(caught.value)


@pytest.mark.parametrize("kind", KINDS)
def test_every_file_kind_reports_mistakes_the_same_way(kind, tmp_path):
    _, base, key, wrong, said = KINDS[kind]
    after = base.count("\n") + 1  # the line appended to the valid file
    first_key = base.split(":", 1)[0]

    path, text = _error(kind, tmp_path, base + "bogus_key: 1\n")
    assert text.startswith(f"{path}:{after}:1: bogus_key: unknown key 'bogus_key'")
    assert first_key in text  # the allowed keys are listed

    path, text = _error(kind, tmp_path, base + f"{key}: {wrong}\n")
    assert text == f"{path}:{after}:{len(key) + 3}: {key}: {said}"

    path, text = _error(kind, tmp_path, base + f"{first_key}: again\n")
    assert text == f"{path}:{after}:1: duplicate key '{first_key}' (first at line 1)"

    path, text = _error(kind, tmp_path, base + "oops: [1\n")
    assert re.match(rf"{re.escape(path)}:{after + 1}:1: invalid YAML: ", text), text

    path, text = _error(kind, tmp_path, None)
    assert text == f"{path}: cannot read: No such file or directory"

    path, text = _error(kind, tmp_path, "")
    assert text.startswith(f"{path}: the file is empty")

    path, text = _error(kind, tmp_path, "- a\n- b\n")
    assert text.startswith(f"{path}:1:1: expected a mapping at the top (")
