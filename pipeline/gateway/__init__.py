"""The OTLP ingestion gateway: receives spans, groups them by trace partition, writes Kafka.

* ``server``: starts the gRPC, HTTP and metrics servers (``run_gateway``);
* ``http``, ``grpc``: the two OTLP transports; ``ingest``: what both do with a request;
* ``auth``, ``validation``, ``redaction``: API keys, span checks, PII scrubbing;
* ``metrics``: its Prometheus counters.

May import ``config``, ``wire``, ``kafka`` and ``store.fields``; never ``sink``, ``agents``
or the local tooling.
"""
