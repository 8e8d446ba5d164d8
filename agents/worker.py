"""Starts a Faust worker for the app, keeping spansieve's own (structlog) logging."""

from __future__ import annotations

from faust.worker import Worker

from agents.app import create_app
from pipeline.kafka import ensure_topics
from pipeline.settings import Settings


def run_worker(settings: Settings) -> None:
    """Run until interrupted (SIGINT/SIGTERM stop it cleanly)."""
    ensure_topics(settings)
    app = create_app(settings)
    # Faust creates changelog topics itself, but asynchronously: an event that arrives
    # before their metadata is known crashes the agent (PartitionsMismatch). Create them
    # first, compacted and co-partitioned with the source topics.
    changelogs = [table.changelog_topic.get_topic_name() for table in app.tables.values()]
    ensure_topics(settings, changelogs, config={"cleanup.policy": "compact"})
    worker = Worker(
        app,
        loglevel=settings.log_level,
        quiet=True,
        override_logging=False,
        redirect_stdouts=False,
    )
    worker.execute_from_commandline()
