import pytest

from pipeline.policies.check import check_policy_file
from pipeline.policies.config import PolicyConfigError


def test_summary_names_policies_types_and_decision_wait(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text(
        "decision_wait: 500ms\nsample_on_first_match: true\npolicies:\n"
        "  - {name: keep, type: always_sample}\n"
        "  - name: c\n    type: composite\n    composite:\n"
        "      max_total_spans_per_second: 5\n"
        "      composite_sub_policy: [{name: s, type: span_count}]\n"
    )
    text = check_policy_file(path)
    lines = text.splitlines()
    assert lines[0] == (
        f"{path}: 2 policies, decision_wait 500ms, num_traces 50000, sample_on_first_match"
    )
    assert "  - keep (always_sample)" in lines
    assert "      - s (span_count)" in lines


def test_raises_config_error(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text("policies: [{name: a, type: nope}]\n")
    with pytest.raises(PolicyConfigError, match=r"p.yaml:1:\d+: policies\[0\].type"):
        check_policy_file(path)
