from click.testing import CliRunner

from pipeline.cli import main


def test_policies_check_accepts_the_examples():
    for path in ("topologies/policies-default.yaml", "topologies/policies-collector.yaml"):
        result = CliRunner().invoke(main, ["policies", "check", path])
        assert result.exit_code == 0, result.output
        assert "errors (status_code)" in result.output


def test_policies_check_names_file_line_and_field(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("policies:\n  - name: a\n    type: latency\n    latency: {threshold_ms: -5}\n")
    result = CliRunner().invoke(main, ["policies", "check", str(bad)])
    assert result.exit_code == 1
    assert f"{bad}:4:" in result.output
    assert "policies[0].latency.threshold_ms" in result.output


def test_every_flag_is_a_settings_variable():
    result = CliRunner().invoke(main, ["gateway", "--help"])
    assert "SPANSIEVE_GATEWAY_API_KEYS" in result.output
    assert "SPANSIEVE_KAFKA_BOOTSTRAP" in result.output
