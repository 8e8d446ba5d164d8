"""The README's main command, `spansieve run`, brings the pipeline up and shows a demo trace."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import uuid

import pytest
from opensearchpy import OpenSearch

from pipeline.config.settings import Settings
from pipeline.store.indices import trace_span_count
from tests.integration.conftest import free_port

pytestmark = pytest.mark.integration


def test_run_sends_a_demo_trace_and_says_where_it_is(
    stack: Settings, opensearch: OpenSearch, tmp_path
):
    run_id = f"run-{uuid.uuid4().hex[:8]}"
    env = {
        **os.environ,
        "SPANSIEVE_STATE_DIR": str(tmp_path),
        "SPANSIEVE_TOPIC_PREFIX": run_id,
        # A private store: `run` must look for the demo trace where the sink wrote it.
        "SPANSIEVE_STORE_INDEX_PREFIX": f"{run_id}-",
        "SPANSIEVE_DECISION_WAIT": "2",
        "SPANSIEVE_GATEWAY_HTTP_PORT": str(free_port()),
        "SPANSIEVE_GATEWAY_METRICS_PORT": str(free_port()),
        "SPANSIEVE_WORKER_WEB_PORT": str(free_port()),
        "SPANSIEVE_QUERY_PORT": str(free_port()),
    }
    finished = subprocess.run(
        [sys.executable, "-m", "pipeline", "run", "--exit-after-demo"],
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    output = finished.stdout + finished.stderr
    assert finished.returncode == 0, output
    match = re.search(r"/([\w-]+)/_search\?q=traceId:([0-9a-f]{32})", output)
    assert match, output
    assert match.group(1) == f"{run_id}-otel-v1-apm-span"
    assert trace_span_count(opensearch, match.group(2), match.group(1)) == 5
    api = re.search(r"curl '(http://127\.0\.0\.1:\d+/api/traces/[0-9a-f]{32})'", output)
    assert api and api.group(1).endswith(match.group(2)), output
