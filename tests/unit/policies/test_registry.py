"""The policy registry: every policy module is registered, tested, and read the same way."""

import importlib
import inspect
import pkgutil
import textwrap
from pathlib import Path

import pytest

import pipeline.policies
from pipeline.policies import registry
from pipeline.policies.base import Policy
from pipeline.policies.check import check_policy_file
from pipeline.policies.config import POLICY_TYPES, load_policy_text
from pipeline.policies.engine import PolicyEngine

from .helpers import FakeClock

TESTS = Path(__file__).resolve().parent
PACKAGE = pipeline.policies.__name__


def _modules():
    for info in pkgutil.iter_modules(pipeline.policies.__path__):
        yield info.name, importlib.import_module(f"{PACKAGE}.{info.name}")


def _defines_a_policy(module) -> bool:
    """A concrete evaluator or a policy config model defined in this very module."""
    for _, obj in inspect.getmembers(module, inspect.isclass):
        if obj.__module__ != module.__name__:
            continue
        if issubclass(obj, Policy) and not inspect.isabstract(obj):
            return True
        if issubclass(obj, registry.PolicyModel) and "type" in obj.model_fields:
            return True
    return False


def test_every_module_that_defines_a_policy_is_registered():
    registered = {t.module.rpartition(".")[2] for t in registry.policy_types()}
    defining = {name for name, module in _modules() if _defines_a_policy(module)}
    assert defining, "found no policy module at all"
    assert defining == registered, "a module that defines a policy must register its type"
    assert set(registry.COLLECTOR_ORDER) <= registered, "a collector type is missing"


def test_one_type_per_module():
    modules = [t.module for t in registry.policy_types()]
    assert len(modules) == len(set(modules)) >= len(registry.COLLECTOR_ORDER)


def test_every_registered_type_has_a_test_file():
    missing = [
        t.name for t in registry.policy_types() if not (TESTS / f"test_{t.name}.py").is_file()
    ]
    assert not missing, f"add tests/unit/policies/test_<type>.py for: {missing}"


def test_types_are_listed_in_module_order():
    assert registry.type_names() == POLICY_TYPES
    assert POLICY_TYPES[:2] == ("always_sample", "latency")
    collector = len(registry.COLLECTOR_ORDER)
    assert POLICY_TYPES[collector - 4 : collector] == ("and", "not", "drop", "composite")
    ours = POLICY_TYPES[collector:]  # spansieve's own types follow, by name
    assert list(ours) == sorted(ours)


def test_each_model_has_the_collector_shape():
    """name, type and at most one section, whose key is the type (as in the collector)."""
    for t in registry.policy_types():
        keys = [f.alias or name for name, f in t.model.model_fields.items()]
        assert keys[:2] == ["name", "type"], t.name
        assert keys[2:] in ([], [t.name]), t.name
        assert registry.type_name(t.model) == t.name


def test_slots():
    nestable = [t.name for t in registry.policy_types() if t.nestable]
    # adaptive must see every trace's outcome, so it stays at the top level
    assert set(nestable) == set(POLICY_TYPES) - {"and", "not", "drop", "composite", "adaptive"}
    assert registry.slot_types("and_sub_policy") == nestable
    assert registry.slot_types("not_sub_policy") == nestable
    assert registry.slot_types("drop_sub_policy") == nestable
    assert registry.slot_types("composite_sub_policy") == [
        t for t in POLICY_TYPES if t in nestable or t == "and"
    ]
    assert registry.slot_types(registry.TOP_LEVEL_SLOT) == list(POLICY_TYPES)
    # a slot is named after the field that holds it, so errors can tell which one it is
    sections = [
        field.annotation
        for t in registry.policy_types()
        for field in t.model.model_fields.values()
        if isinstance(field.annotation, type)
        and issubclass(field.annotation, registry.SectionModel)
    ]
    assert len(sections) == 4  # and, not, drop, composite
    fields = {f.alias or name for s in sections for name, f in s.model_fields.items()}
    assert set(registry.slot_names()) - {registry.TOP_LEVEL_SLOT} <= fields


def test_only_drop_is_evaluated_first():
    assert [t.name for t in registry.policy_types() if t.evaluated_first] == ["drop"]


def test_a_slot_cannot_be_redeclared_differently():
    assert registry.sub_policy_slot("and_sub_policy") is not None  # same declaration: fine
    with pytest.raises(ValueError, match="declared twice"):
        registry.sub_policy_slot("and_sub_policy", also=("composite",))


def test_registering_another_model_for_a_known_type_fails():
    from typing import Literal

    class Impostor(registry.PolicyModel):
        type: Literal["latency"]

    with pytest.raises(ValueError, match="registered twice"):
        registry.register(Impostor, lambda config, context: None)


def test_a_model_without_a_type_literal_is_refused():
    class NoType(registry.PolicyModel):
        pass

    with pytest.raises(TypeError, match="Literal"):
        registry.type_name(NoType)


def test_unknown_type_lookup():
    with pytest.raises(ValueError, match="unknown policy type 'nope'"):
        registry.policy_type("nope")


CONTAINERS = """
policies:
  - name: d
    type: drop
    drop: {drop_sub_policy: [{name: d1, type: trace_flags}]}
  - name: n
    type: not
    not: {not_sub_policy: {name: n1, type: span_count, span_count: {min_spans: 2}}}
  - name: c
    type: composite
    composite:
      max_total_spans_per_second: 10
      composite_sub_policy:
        - name: a
          type: and
          and: {and_sub_policy: [{name: a1, type: always_sample}, {name: a2, type: trace_flags}]}
"""


def test_build_through_the_registry_nests():
    config = load_policy_text(CONTAINERS)
    engine = PolicyEngine(config, FakeClock())
    assert [type(p).__name__ for p in engine.policies] == ["Drop", "Not", "Composite"]
    composite = engine.policies[2]
    (and_,) = composite.subpolicies
    assert [type(p).__name__ for p in and_.subpolicies] == ["AlwaysSample", "TraceFlags"]
    assert composite.stateful and composite.reports_sub_policy
    assert [p.name for p in config.policies[2].sub_policies()[0].sub_policies()] == ["a1", "a2"]


def test_check_walks_every_container(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text(textwrap.dedent(CONTAINERS))
    lines = check_policy_file(path).splitlines()
    assert lines[1:] == [
        "  - d (drop)",
        "      - d1 (trace_flags)",
        "  - n (not)",
        "      - n1 (span_count)",
        "  - c (composite)",
        "      - a (and)",
        "          - a1 (always_sample)",
        "          - a2 (trace_flags)",
        "  (drop policies are evaluated first: 1)",
    ]
