"""structlog setup shared by every command: JSON lines by default, colours on a terminal."""

from __future__ import annotations

import logging
import sys

import structlog

from pipeline.config.log_dedup import install


def configure_logging(
    log_format: str = "auto", level: str = "info", repeat_interval: float = 30.0
) -> None:
    """Route structlog and the standard library's logging through one renderer.

    The Kafka and Faust clients' repeated warnings go through a RepeatFilter (see
    pipeline.config.log_dedup): during a broker outage they would write a line per attempt.
    """
    use_console = log_format == "console" or (log_format == "auto" and sys.stderr.isatty())
    renderer = (
        structlog.dev.ConsoleRenderer() if use_console else structlog.processors.JSONRenderer()
    )
    shared = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                renderer,
            ],
            foreign_pre_chain=[
                *shared,
                structlog.stdlib.add_logger_name,
                structlog.stdlib.ExtraAdder(allow=("repeated",)),  # set by the RepeatFilter
            ],
        )
    )
    install(handler, repeat_interval)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("aiokafka", "faust", "mode", "opensearch", "urllib3", "kafka", "httpx"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
