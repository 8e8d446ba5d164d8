"""Wire formats: what spans look like between processes.

* ``otlp``: OTLP protobuf helpers (regrouping by trace, span counts, AnyValue);
* ``otlp_json``: OTLP/JSON -> protobuf;
* ``metrics_json``: the span-metrics topics' two encodings (OTLP protobuf, OTLP/JSON);
* ``pieces``: the spans topic's per-trace pieces and their index header;
* ``partitioner``: trace id -> Kafka partition, shared by gateway and workers.

Pure: imports protobuf and ``pipeline.config`` only; no Kafka, Faust, OpenSearch or HTTP
library.
"""
