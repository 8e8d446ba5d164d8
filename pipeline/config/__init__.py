"""Configuration: settings from SPANSIEVE_* variables and flags, YAML files, logging.

* ``settings``: the one ``Settings`` model (pydantic-settings) every command reads;
* ``yaml_file``: YAML files (policies, topologies, redaction) read with
  ``file:line:col: field: message`` errors;
* ``models``: the pydantic pieces of those files (``StrictModel``, ``Duration``, ...);
* ``durations``: Go durations ("1.5s", "1h30m"), exact, in integer nanoseconds;
* ``logs``: structlog set-up (JSON lines or a console);
* ``package_data``: paths to the data files shipped in the package.

May import pydantic, PyYAML and structlog; no Kafka, Faust, OpenSearch or HTTP library,
and nothing else of ``pipeline``.
"""
