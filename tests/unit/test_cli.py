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


def test_run_passes_list_settings_to_children_as_json(monkeypatch):
    from pipeline.config.settings import Settings
    from pipeline.local.run import _settings_env

    links = [{"name": "Logs", "url": "https://logs.example/?q={trace_id}"}]
    env = _settings_env(Settings(query_log_links=links, query_max_traces=7))
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    child = Settings()  # as a child process reads its environment
    assert [link.model_dump() for link in child.query_log_links] == links
    assert child.query_max_traces == 7
