import textwrap

import pytest

from pipeline.config.models import parse_duration
from pipeline.policies.config import (
    POLICY_TYPES,
    PolicyConfigError,
    SamplingConfig,
    load_policy_file,
    load_policy_text,
)


def load(text, **kw):
    return load_policy_text(textwrap.dedent(text), "p.yaml", **kw)


def error(text, **kw) -> PolicyConfigError:
    with pytest.raises(PolicyConfigError) as err:
        load(text, **kw)
    return err.value


MINIMAL = """
policies:
  - {name: all, type: always_sample}
"""


def test_defaults():
    c = load(MINIMAL)
    assert c.decision_wait == 30.0
    assert c.num_traces == 50000
    assert c.expected_new_traces_per_sec == 0
    assert c.decision_cache.sampled_cache_size == 0
    assert c.decision_cache.non_sampled_cache_size == 0
    assert not c.sample_on_first_match
    assert c.decision_wait_after_root_received == 0
    assert c.maximum_trace_size_bytes == 0
    assert not c.drop_pending_traces_on_shutdown
    assert not c.block_on_overflow
    assert c.max_trace_age == 300.0
    assert c.decision_cache_ttl == 600.0


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("30s", 30),
        ("500ms", 0.5),
        ("1m", 60),
        ("1m30s", 90),
        ("1.5h", 5400),
        ("0", 0),
        ("250us", 0.00025),
        ("10\u00b5s", 0.00001),
        (45, 45),
        (0.25, 0.25),
        ("+2s", 2),
    ],
)
def test_durations(value, seconds):
    assert parse_duration(value) == pytest.approx(seconds)


@pytest.mark.parametrize("value", ["30", "30 s", "-1s", "1d", "", "s", True, [1], -3])
def test_bad_durations(value):
    with pytest.raises(ValueError):
        parse_duration(value)


def test_every_top_level_key():
    c = load(
        """
        decision_wait: 10s
        num_traces: 100
        expected_new_traces_per_sec: 10
        decision_cache: {sampled_cache_size: 100_000, non_sampled_cache_size: 5}
        sample_on_first_match: true
        decision_wait_after_root_received: 2s
        maximum_trace_size_bytes: 1048576
        drop_pending_traces_on_shutdown: true
        block_on_overflow: true
        max_trace_age: 2m
        decision_cache_ttl: 1h
        policies: [{name: a, type: always_sample}]
        """
    )
    assert (c.decision_wait, c.num_traces, c.decision_cache.sampled_cache_size) == (10, 100, 100000)
    assert (c.max_trace_age, c.decision_cache_ttl, c.decision_wait_after_root_received) == (
        120,
        3600,
        2,
    )
    assert c.sample_on_first_match and c.block_on_overflow and c.drop_pending_traces_on_shutdown


def test_readme_example_loads():
    """The collector README's big example (every policy type of that version)."""
    c = load(README_EXAMPLE)
    assert [p.type for p in c.policies][:4] == [
        "always_sample",
        "latency",
        "numeric_attribute",
        "probabilistic",
    ]
    assert len(c.policies) == 16


def test_every_policy_type_is_accepted():
    sections = {
        "always_sample": None,
        "trace_flags": None,
        "latency": "{threshold_ms: 1}",
        "numeric_attribute": "{key: k, min_value: 1}",
        "probabilistic": "{sampling_percentage: 5, hash_salt: s}",
        "status_code": "{status_codes: [ERROR]}",
        "string_attribute": "{key: k, values: [v], enabled_regex_matching: true, "
        "cache_max_size: 5, invert_match: true}",
        "boolean_attribute": "{key: k, value: true, invert_match: false}",
        "span_count": "{min_spans: 1, max_spans: 2}",
        "trace_state": "{key: k, values: [v]}",
        "rate_limiting": "{spans_per_second: 5, burst_capacity: 7}",
        "bytes_limiting": "{bytes_per_second: 5, burst_capacity: 7}",
        "ottl_condition": "{error_mode: ignore, span: ['name == \"x\"'], spanevent: ['true']}",
        "and": "{and_sub_policy: [{name: s, type: always_sample}]}",
        "not": "{not_sub_policy: {name: s, type: always_sample}}",
        "drop": "{drop_sub_policy: [{name: s, type: always_sample}]}",
        "composite": "{max_total_spans_per_second: 5, policy_order: [s], "
        "composite_sub_policy: [{name: s, type: always_sample}], "
        "rate_allocation: [{policy: s, percent: 50}]}",
        "latency_percentile": "{percentile: 95, interval: 1m, min_samples: 5, root_only: true}",
        "adaptive": "{target_spans_per_second: 100, interval: 5s, floor_traces_per_minute: 2}",
    }
    assert set(sections) == set(POLICY_TYPES)
    lines = ["policies:"]
    for t, section in sections.items():
        lines.append(f"  - name: {t}-policy")
        lines.append(f"    type: {t}")
        if section:
            lines.append(f"    {t}: {section}")
    c = load_policy_text("\n".join(lines))
    assert [p.type for p in c.policies] == list(sections)


def test_collector_config_shape(tmp_path):
    path = tmp_path / "otelcol.yaml"
    path.write_text(
        textwrap.dedent(
            """
            receivers: {otlp: {protocols: {grpc: {}}}}
            processors:
              batch: {}
              tail_sampling:
                decision_wait: 5s
                policies: [{name: a, type: always_sample}]
            service: {pipelines: {traces: {receivers: [otlp], processors: [tail_sampling]}}}
            """
        )
    )
    c = load_policy_file(path)
    assert c.decision_wait == 5


def test_named_processors():
    text = """
    processors:
      tail_sampling/a: {policies: [{name: a, type: always_sample}]}
      tail_sampling/b: {decision_wait: 1s, policies: [{name: b, type: always_sample}]}
    """
    assert "several tail_sampling processors" in str(error(text))
    assert load(text, processor="b").decision_wait == 1
    assert load(text, processor="tail_sampling/a").policies[0].name == "a"
    assert "no processor 'tail_sampling/c'" in str(error(text, processor="c"))
    one = """
    processors:
      tail_sampling/only: {policies: [{name: a, type: always_sample}]}
    """
    assert load(one).policies[0].name == "a"


def test_tail_sampling_at_top():
    assert load("tail_sampling: {policies: [{name: a, type: always_sample}]}").policies


def test_collector_config_without_tail_sampling():
    e = error("processors: {batch: {}}")
    assert "no tail_sampling processor under processors; found: batch" in str(e)


def test_errors_in_collector_config_carry_the_full_path():
    e = error(
        """
        processors:
          tail_sampling:
            policies:
              - {name: a, type: latency, latency: {threshold_ms: x}}
        """
    )
    assert e.field == "processors.tail_sampling.policies[0].latency.threshold_ms"
    assert e.line == 5


# --------------------------------------------------------------------------- error quality


def test_wrong_value_type_names_line_field_and_value():
    e = error(
        """
        decision_wait: 10s
        policies:
          - name: ok
            type: always_sample
          - name: a
            type: latency
            latency:
              threshold_ms: fast
        """
    )
    assert (e.source, e.line, e.column) == ("p.yaml", 9, 21)
    assert e.field == "policies[1].latency.threshold_ms"
    assert "expected an integer, got 'fast'" in e.message
    assert str(e).startswith("p.yaml:9:21: policies[1].latency.threshold_ms: ")


def test_unknown_policy_type_lists_allowed_types():
    e = error(
        """
        policies:
          - {name: a, type: always_sample}
          - {name: b, type: always_sampel}
        """
    )
    assert (e.line, e.field) == (4, "policies[1].type")
    assert "unknown policy type 'always_sampel'; allowed types: always_sample, latency" in str(e)
    for t in POLICY_TYPES:
        assert t in e.message


def test_type_not_allowed_inside_and():
    e = error(
        """
        policies:
          - name: a
            type: and
            and:
              and_sub_policy:
                - {name: b, type: drop, drop: {drop_sub_policy: []}}
        """
    )
    assert e.field == "policies[0].and.and_sub_policy[0].type"
    assert "policy type 'drop' is not allowed here" in e.message
    assert "composite" not in e.message.split("allowed types here:")[1]


def test_and_is_allowed_inside_composite_only():
    e = error(
        """
        policies:
          - name: c
            type: composite
            composite:
              max_total_spans_per_second: 10
              composite_sub_policy:
                - {name: x, type: not, not: {not_sub_policy: {name: y, type: always_sample}}}
        """
    )
    assert "policy type 'not' is not allowed here" in e.message
    assert e.message.endswith("ottl_condition, and, latency_percentile")  # not adaptive


def test_missing_type():
    e = error("policies: [{name: a}]")
    assert "policy has no 'type'" in e.message and "always_sample" in e.message


def test_unknown_key_points_at_the_key():
    e = error(
        """
        policies:
          - name: a
            type: latency
            latency:
              threshold_ms: 1
              treshold_ms: 2
        """
    )
    assert (e.line, e.column) == (7, 7)
    assert e.field == "policies[0].latency.treshold_ms"
    assert "unknown key 'treshold_ms'" in e.message
    assert "allowed keys: threshold_ms, upper_threshold_ms" in e.message


def test_section_of_another_type_is_an_error():
    e = error("policies: [{name: a, type: latency, probabilistic: {sampling_percentage: 1}}]")
    assert "unknown key 'probabilistic' in a policy of type 'latency'" in e.message
    assert "allowed keys: name, type, latency" in e.message


def test_unknown_top_level_key():
    e = error("policies: [{name: a, type: always_sample}]\ndecision_wiat: 3s")
    assert e.field == "decision_wiat"
    assert "allowed keys: policies, decision_wait" in e.message


def test_missing_required_key():
    e = error("policies: [{name: a, type: string_attribute, string_attribute: {values: [x]}}]")
    assert e.field == "policies[0].string_attribute.key"
    assert "required key 'key' is missing" in e.message
    e = error("policies: [{name: a, type: status_code}]")
    assert e.field == "policies[0].status_code"


def test_literal_values_are_listed():
    e = error("policies: [{name: a, type: status_code, status_code: {status_codes: [ERR]}}]")
    assert e.field == "policies[0].status_code.status_codes[0]"
    assert "expected 'OK', 'ERROR' or 'UNSET', got 'ERR'" in e.message
    e = error(
        "policies: [{name: a, type: ottl_condition, "
        "ottl_condition: {error_mode: loud, span: [true]}}]"
    )
    assert "'propagate', 'ignore' or 'silent'" in e.message


def test_bad_regex_points_at_the_pattern():
    e = error(
        """
        policies:
          - name: a
            type: string_attribute
            string_attribute:
              key: k
              enabled_regex_matching: true
              values:
                - ok
                - "(unclosed"
        """
    )
    assert (e.line, e.field) == (10, "policies[0].string_attribute.values[1]")
    assert "invalid regular expression '(unclosed'" in e.message


def test_bad_ottl_points_at_the_condition_and_column():
    e = error(
        """
        policies:
          - name: o
            type: ottl_condition
            ottl_condition:
              span:
                - 'name == "a"'
                - 'attributes["x"] == 1 and IsMatch(name, "b")'
        """
    )
    assert (e.line, e.field) == (8, "policies[0].ottl_condition.span[1]")
    assert "functions/converters (IsMatch(...))" in e.message and "column 26" in e.message


@pytest.mark.parametrize(
    ("text", "field", "fragment"),
    [
        ("policies: []", "policies", "at least 1"),
        (
            "policies: [{name: a, type: latency, "
            "latency: {threshold_ms: 5, upper_threshold_ms: 5}}]",
            "policies[0].latency.upper_threshold_ms",
            "must be greater than threshold_ms",
        ),
        (
            "policies: [{name: a, type: numeric_attribute, numeric_attribute: {key: k}}]",
            "policies[0].numeric_attribute",
            "set min_value or max_value",
        ),
        (
            "policies: [{name: a, type: numeric_attribute, "
            "numeric_attribute: {key: k, min_value: 5, max_value: 1}}]",
            "policies[0].numeric_attribute.min_value",
            "greater than max_value",
        ),
        (
            "policies: [{name: a, type: span_count, span_count: {min_spans: 5, max_spans: 2}}]",
            "policies[0].span_count.max_spans",
            "less than min_spans",
        ),
        (
            "policies: [{name: a, type: probabilistic, probabilistic: {sampling_percentage: -1}}]",
            "policies[0].probabilistic.sampling_percentage",
            "greater than or equal to 0",
        ),
        (
            "policies: [{name: a, type: probabilistic, "
            "probabilistic: {sampling_percentage: .nan}}]",
            "policies[0].probabilistic.sampling_percentage",
            "finite",
        ),
        (
            "policies: [{name: a, type: ottl_condition, ottl_condition: {error_mode: ignore}}]",
            "policies[0].ottl_condition",
            "at least one condition",
        ),
        ("policies: [{name: '', type: always_sample}]", "policies[0].name", "at least 1"),
        (
            "policies: [{name: a, type: always_sample}, {name: a, type: always_sample}]",
            "policies[1].name",
            "duplicate policy name 'a'",
        ),
        (
            "policies: [{name: a, type: rate_limiting, rate_limiting: {spans_per_second: '5'}}]",
            "policies[0].rate_limiting.spans_per_second",
            "expected an integer, got '5'",
        ),
        (
            "policies: [{name: a, type: boolean_attribute, boolean_attribute: {key: k, value: 1}}]",
            "policies[0].boolean_attribute.value",
            "expected true or false, got 1",
        ),
        (
            "policies: [{name: a, type: latency, latency: 5}]",
            "policies[0].latency",
            "expected a mapping",
        ),
        ("policies: {name: a}", "policies", "expected a list"),
        (
            "num_traces: 0\npolicies: [{name: a, type: always_sample}]",
            "num_traces",
            "greater than 0",
        ),
    ],
)
def test_value_errors(text, field, fragment):
    e = error(text)
    assert e.field == field
    assert fragment in e.message, e.message


def test_composite_references_are_checked():
    base = """
    policies:
      - name: c
        type: composite
        composite:
          max_total_spans_per_second: 10
          policy_order: {order}
          composite_sub_policy: [{{name: x, type: always_sample}}, {{name: y, type: always_sample}}]
          rate_allocation: {alloc}
    """
    e = error(base.format(order="[x, z]", alloc="[]"))
    assert e.field == "policies[0].composite.policy_order[1]"
    assert "'z', which is not a composite_sub_policy (known: x, y)" in e.message
    e = error(base.format(order="[]", alloc="[{policy: q, percent: 10}]"))
    assert e.field == "policies[0].composite.rate_allocation[0].policy"
    e = error(base.format(order="[]", alloc="[{policy: x, percent: 10}, {policy: x, percent: 5}]"))
    assert "allocated twice" in e.message
    e = error(base.format(order="[]", alloc="[{policy: x, percent: 101}]"))
    assert e.field == "policies[0].composite.rate_allocation[0].percent"


def test_yaml_problems():
    e = error("policies: [{name: a, type: always_sample}\n")
    assert "invalid YAML" in e.message and e.line is not None
    e = error("policies:\n  - {name: a, type: always_sample}\npolicies: []\n")
    assert "duplicate key 'policies' (first at line 1)" in e.message and e.line == 3
    assert "the file is empty" in str(error(""))
    assert "expected a mapping at the top" in str(error("- a\n- b\n"))


def test_file_errors(tmp_path):
    with pytest.raises(PolicyConfigError, match="cannot read"):
        load_policy_file(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_bytes(b"\xff\xfe")
    with pytest.raises(PolicyConfigError, match="not UTF-8"):
        load_policy_file(bad)


def test_error_count_is_reported():
    e = error(
        "policies: [{name: a, type: latency, latency: {threshold_ms: x, upper_threshold_ms: y}}]"
    )
    assert e.more == 1 and "(and 1 more error)" in str(e)


def test_config_error_is_a_value_error():
    assert issubclass(PolicyConfigError, ValueError)


def test_model_is_frozen():
    c = load(MINIMAL)
    with pytest.raises(ValueError):
        c.num_traces = 5  # type: ignore[misc]
    assert isinstance(c, SamplingConfig)


README_EXAMPLE = """
decision_wait: 10s
num_traces: 100
expected_new_traces_per_sec: 10
decision_cache:
  sampled_cache_size: 100_000
  non_sampled_cache_size: 100_000
policies:
  [
    {name: test-policy-1, type: always_sample},
    {name: test-policy-2, type: latency, latency: {threshold_ms: 5000, upper_threshold_ms: 10000}},
    {name: test-policy-3, type: numeric_attribute,
     numeric_attribute: {key: key1, min_value: 50, max_value: 100}},
    {name: test-policy-4, type: probabilistic, probabilistic: {sampling_percentage: 10}},
    {name: test-policy-5, type: status_code, status_code: {status_codes: [ERROR, UNSET]}},
    {name: test-policy-6, type: string_attribute,
     string_attribute: {key: key2, values: [value1, value2]}},
    {name: test-policy-7, type: string_attribute,
     string_attribute: {key: key2, values: [value1, val*], enabled_regex_matching: true,
                        cache_max_size: 10}},
    {name: test-policy-8, type: rate_limiting, rate_limiting: {spans_per_second: 35}},
    {name: test-policy-9, type: bytes_limiting,
     bytes_limiting: {bytes_per_second: 1024000, burst_capacity: 2048000}},
    {name: test-policy-10, type: span_count, span_count: {min_spans: 2, max_spans: 20}},
    {name: test-policy-11, type: trace_state, trace_state: {key: key3, values: [value1, value2]}},
    {name: test-policy-12, type: boolean_attribute, boolean_attribute: {key: key4, value: true}},
    {name: test-policy-13, type: ottl_condition,
     ottl_condition: {
       error_mode: ignore,
       span: ["attributes[\\"test_attr_key_1\\"] == \\"test_attr_val_1\\"",
              "attributes[\\"test_attr_key_2\\"] != \\"test_attr_val_1\\""],
       spanevent: ["name != \\"test_span_event_name\\"",
                   "attributes[\\"test_event_attr_key_2\\"] != \\"test_event_attr_val_1\\""]}},
    {name: and-policy-1, type: and,
     and: {and_sub_policy: [
       {name: test-and-policy-1, type: numeric_attribute,
        numeric_attribute: {key: key1, min_value: 50, max_value: 100}},
       {name: test-and-policy-2, type: string_attribute,
        string_attribute: {key: key2, values: [value1, value2]}}]}},
    {name: drop-policy-1, type: drop,
     drop: {drop_sub_policy: [
       {name: test-drop-policy-1, type: string_attribute,
        string_attribute: {key: url.path, values: [\\/health, \\/metrics],
                           enabled_regex_matching: true}}]}},
    {name: composite-policy-1, type: composite,
     composite: {
       max_total_spans_per_second: 1000,
       policy_order: [test-composite-policy-1, test-composite-policy-2, test-composite-policy-3],
       composite_sub_policy: [
         {name: test-composite-policy-1, type: numeric_attribute,
          numeric_attribute: {key: key1, min_value: 50}},
         {name: test-composite-policy-2, type: string_attribute,
          string_attribute: {key: key2, values: [value1, value2]}},
         {name: test-composite-policy-3, type: always_sample}],
       rate_allocation: [{policy: test-composite-policy-1, percent: 50},
                         {policy: test-composite-policy-2, percent: 25}]}},
  ]
"""


def test_expected_new_traces_per_sec_is_accepted_with_a_warning(caplog):
    with caplog.at_level("WARNING", logger="pipeline.policies.config"):
        c = load(
            """
            processors:
              tail_sampling:
                expected_new_traces_per_sec: 10
                policies: [{name: a, type: always_sample}]
            """
        )
    assert c.expected_new_traces_per_sec == 10
    (record,) = caplog.records
    message = record.getMessage()
    assert message.startswith(
        "p.yaml:4:5: processors.tail_sampling.expected_new_traces_per_sec: accepted for "
        "collector configs, but has no effect in spansieve"
    ), message


def test_no_warning_when_the_no_effect_key_is_absent(caplog):
    from pipeline.policies.config import keys_without_effect

    with caplog.at_level("WARNING", logger="pipeline.policies.config"):
        c = load(MINIMAL)
    assert caplog.records == [] and keys_without_effect(c) == []
    explicit = SamplingConfig.model_validate(
        {"expected_new_traces_per_sec": 0, "policies": [{"name": "a", "type": "always_sample"}]}
    )
    assert keys_without_effect(explicit) == ["expected_new_traces_per_sec"]
