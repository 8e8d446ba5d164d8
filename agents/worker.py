"""Starts a Faust worker for the app, keeping spansieve's own (structlog) logging."""

from __future__ import annotations

from faust.worker import Worker

from agents.app import create_app
from pipeline.config.settings import Settings
from pipeline.kafka.topics import ensure_topics
from pipeline.sampler.policy_source import PolicySource, seconds

RETENTION_MARGIN = 300.0  # seconds kept beyond the longest time a record can matter
SEGMENT_MS = "60000"  # roll segments each minute so time retention can delete them


def changelog_retention(settings: Settings) -> dict[str, float]:
    """Seconds each table's changelog must keep records (they expire, not compact).

    The one table is the decision cache's: a decision matters until it leaves the cache
    (decision_cache_ttl), and the low-water offsets saved beside the decisions are
    rewritten every second. The trace buffer has no table and no changelog: its pieces
    live in rocksdict databases of their own and the spans topic is their log (see
    pipeline.sampler.buffer and pipeline.sampler.storage).
    """
    config = PolicySource(settings).config
    keep = seconds(config.decision_cache_ttl)
    if settings.span_metrics:
        # The batches also carry span-metrics checkpoints, needed until their windows close.
        window_lifetime = (
            settings.span_metrics_window
            + seconds(config.decision_wait)
            + settings.span_metrics_grace
        )
        keep = max(keep, window_lifetime)
    return {"trace-decisions": keep + RETENTION_MARGIN}


def ensure_changelogs(settings: Settings, app) -> None:
    """Create the tables' changelog topics before Faust does.

    Faust creates them asynchronously, and an event that arrives before their metadata is
    known crashes the agent (PartitionsMismatch). Ours are time-retained, not compacted:
    decisions expire without tombstones.
    """
    retention = changelog_retention(settings)
    for name, table in app.tables.items():
        keep = retention.get(name)
        config = (
            {
                "cleanup.policy": "delete",
                "retention.ms": str(int(keep * 1000)),
                "segment.ms": SEGMENT_MS,
            }
            if keep is not None
            else {"cleanup.policy": "compact"}
        )
        ensure_topics(settings, [table.changelog_topic.get_topic_name()], config=config)


def run_worker(settings: Settings) -> None:
    """Run until interrupted (SIGINT/SIGTERM stop it cleanly)."""
    ensure_topics(settings)
    app = create_app(settings)
    ensure_changelogs(settings, app)
    worker = Worker(
        app,
        loglevel=settings.log_level,
        quiet=True,
        override_logging=False,
        redirect_stdouts=False,
    )
    worker.execute_from_commandline()
