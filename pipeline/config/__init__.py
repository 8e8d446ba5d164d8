"""Configuration: settings from SPANSIEVE_* variables and flags, YAML files, logging.

* ``settings``: the one ``Settings`` model (pydantic-settings) every command reads;
* ``yaml_file``: YAML loading with file:line:col errors and strict models;
* ``logs``: structlog set-up (JSON lines or a console).

May import pydantic, PyYAML and structlog; no Kafka, Faust, OpenSearch or HTTP library,
and nothing else of ``pipeline``.
"""
