"""Sending logic without a server: retries, Retry-After, endpoints, pool sizing, CLI flags."""

import asyncio
import json
import time

import pytest
from click.testing import CliRunner

from pipeline.cli import main
from pipeline.config.settings import Settings
from pipeline.loadgen import plan_pool, resolve_endpoint
from pipeline.loadgen.ledger import Ledger
from pipeline.loadgen.report import resolve_burst, run_seconds
from pipeline.loadgen.sender import Answer, deliver, parse_retry_after
from pipeline.loadgen.topology import Burst


def scripted(*answers):
    """A transport that gives the answers in turn (an exception is raised)."""
    pending = list(answers)
    calls = []

    async def post(body: bytes) -> Answer:
        calls.append(time.monotonic())
        answer = pending.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    return post, calls


def test_throttled_requests_are_counted_and_retried_after_retry_after():
    ledger = Ledger(time.time())
    post, calls = scripted(
        Answer("429", retry_after=0.2),
        OSError("connection refused"),
        Answer("200", rejected_spans=2),
    )
    sent_at, error = asyncio.run(deliver(post, b"x", 10, ledger, max_retry_seconds=5))
    assert sent_at is not None and error == ""
    assert calls[1] - calls[0] >= 0.19
    assert ledger.responses == {"429": 1, "200": 1}
    assert ledger.connection_errors == 1 and ledger.retries == 2
    assert ledger.rejected_spans == 2


def test_non_retryable_answers_fail_at_once():
    ledger = Ledger(time.time())
    post, calls = scripted(Answer("400", message="bad protobuf"))
    sent_at, error = asyncio.run(deliver(post, b"x", 10, ledger, max_retry_seconds=5))
    assert sent_at is None and error == "400: bad protobuf" and len(calls) == 1


def test_retrying_gives_up_after_the_limit():
    ledger = Ledger(time.time())
    post, calls = scripted(*[Answer("UNAVAILABLE", retry_after=0.05)] * 20)
    sent_at, error = asyncio.run(deliver(post, b"x", 10, ledger, max_retry_seconds=0.2))
    assert sent_at is None and "gave up after" in error and "UNAVAILABLE" in error
    assert 2 <= len(calls) <= 5


def test_retry_after_parsing():
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
    assert 0 <= parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0


def test_endpoints_from_settings_and_addresses():
    settings = Settings(gateway_host="0.0.0.0", gateway_http_port=1234, gateway_api_keys="k1,k2")
    http = resolve_endpoint(settings)
    assert http.address == "http://127.0.0.1:1234/v1/traces"
    assert http.headers == (("x-api-key", "k1"),)
    assert resolve_endpoint(settings, "grpc").address == "127.0.0.1:4317"
    assert resolve_endpoint("gw:4318").address == "http://gw:4318/v1/traces"
    assert resolve_endpoint("https://gw/v1/traces").address == "https://gw/v1/traces"
    assert resolve_endpoint("http://gw:4317/", "grpc").address == "gw:4317"


def test_pool_sizing():
    assert plan_pool(100_000, 100_000) == (1000, 60)
    per_request, requests = plan_pool(100, 100)
    assert per_request == 20 and per_request * requests >= 5000


def test_burst_flags():
    configured = Burst(multiplier=3, at=300, duration=30)
    assert resolve_burst(configured, False, None, None, None, 60) is None
    assert resolve_burst(configured, True, None, None, None, 60) is False
    assert resolve_burst(configured, False, 10, "5s", None, 60) == Burst(
        multiplier=10, at=5, duration=30
    )
    assert resolve_burst(None, False, 10, "20s", None, 60) == Burst(
        multiplier=10, at=20, duration=40
    )
    with pytest.raises(ValueError, match="--burst-multiplier is needed"):
        resolve_burst(None, False, None, "5s", None, 60)
    with pytest.raises(ValueError, match="cannot be combined"):
        resolve_burst(None, True, 2, None, None, 60)
    with pytest.raises(ValueError, match="burst"):
        resolve_burst(None, False, -1, None, None, 60)
    assert run_seconds("1m30s") == 90 and run_seconds("12") == 12
    with pytest.raises(ValueError, match="--duration"):
        run_seconds("long")


def test_cli_check_describes_the_estate():
    result = CliRunner().invoke(main, ["loadgen", "--check"])
    assert result.exit_code == 0, result.output
    assert "estate-30: 30 services" in result.output
    assert "spans per trace" in result.output and "bad deploy: recommendation" in result.output


def test_cli_reports_topology_errors_with_file_and_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nentry_points: []\nservices: {}\n")
    result = CliRunner().invoke(main, ["loadgen", "--topology", str(bad), "--check"])
    assert result.exit_code == 1
    assert f"{bad}:2:" in result.output and "entry_points" in result.output


def test_cli_refuses_bad_flags():
    result = CliRunner().invoke(main, ["loadgen", "--duration", "forever"])
    assert result.exit_code == 2 and "--duration" in result.output
    result = CliRunner().invoke(main, ["loadgen", "--no-burst", "--burst-multiplier", "2"])
    assert result.exit_code == 2 and "cannot be combined" in result.output


def test_cli_counts_failures_when_no_gateway_answers(tmp_path):
    summary = tmp_path / "truth.json"
    result = CliRunner().invoke(
        main,
        [
            "loadgen", "--endpoint", "http://127.0.0.1:9/v1/traces", "--rate", "200",
            "--duration", "0.3", "--max-retry", "0.2", "--quiet", "--summary", str(summary),
        ],
    )  # fmt: skip
    assert result.exit_code == 1, result.output
    truth = json.loads(summary.read_text())
    assert truth["spans_sent"] == 0 and truth["failed_spans"] > 0
    assert truth["connection_errors"] > 0 and truth["failed_trace_ids"]
