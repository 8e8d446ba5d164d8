"""Span-derived metrics: RED series and the service graph, over every span, kept or not.

Work in progress (issue 12): the sampler feeds them when ``span_metrics`` is on (off by
default; see ``pipeline.sampler.span_metrics``) and sends closed windows to the
red-metrics and service-graph topics; open windows are not yet kept across a rebalance.

* ``red``: calls, errors and duration histograms per (service.name, span.name, span.kind,
  status.code) plus configured dimensions, in tumbling event-time windows (span end),
  with a cardinality limit per service and exemplars that prefer kept traces;
* ``service_graph``: client -> server and producer -> consumer edges paired within a
  trace, virtual nodes for uninstrumented peers;
* ``otlp``: closed windows -> ``ExportMetricsServiceRequest`` (delta temporality).

The sampler hands each decided trace (a parsed ``TracesData``, its id, kept or not) to
the aggregators, so no span is parsed twice. Pure: imports protobuf, ``pipeline.config``
and ``pipeline.wire`` only; no Kafka, Faust, OpenSearch or HTTP library.
"""
