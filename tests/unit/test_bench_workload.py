"""The reference workload's requests: every trace is a tree of its own spans."""

from __future__ import annotations

import random
from collections import defaultdict

from pipeline.bench.workload import build_export_request


def test_every_trace_has_one_root_and_parents_within_the_trace():
    request = build_export_request(random.Random(3), spans=512, traces=50)
    spans_of_trace = defaultdict(list)
    for span in request.resource_spans[0].scope_spans[0].spans:
        spans_of_trace[span.trace_id].append(span)
    assert len(spans_of_trace) == 50
    for spans in spans_of_trace.values():
        ids = {span.span_id for span in spans}
        assert sum(1 for span in spans if not span.parent_span_id) == 1
        assert all(span.parent_span_id in ids for span in spans if span.parent_span_id)
