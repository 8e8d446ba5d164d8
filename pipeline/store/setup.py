"""Install the trace store on a cluster: templates, rollover alias, service map, lifecycle
(and the span-metrics index template, ``pipeline.store.metrics_indices``).

``ensure_store`` is idempotent and safe to run from every worker at start and from
``spansieve store init``: it (re)installs the templates, creates the first rollover index
behind the write alias when there is none, creates the service-map index, installs the ISM
policy when the node has ISM, and rolls the alias over when the write index predates the
template's schema version (so a mapping change takes effect at once, not the next day).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import structlog
from opensearchpy import OpenSearch
from opensearchpy.exceptions import RequestError

from pipeline.config.settings import Settings
from pipeline.store import lifecycle
from pipeline.store.indices import (
    SCHEMA_KEY,
    next_index_name,
    schema_version,
    service_map_template,
    span_template,
    store_names,
    write_index,
)
from pipeline.store.metrics_indices import install_metrics_template

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class StoreState:
    """What ``ensure_store`` found or made; printed by ``spansieve store init``."""

    span_alias: str
    write_index: str
    service_map_index: str
    lifecycle: str  # "ism" or "worker"
    codec: str
    created: bool  # the first span index was created now
    upgraded: bool  # the alias was rolled over for a newer schema


def _create_ignoring_race(client: OpenSearch, index: str, body: dict[str, Any]) -> bool:
    """Create an index; False when another worker was faster."""
    try:
        client.indices.create(index=index, body=body)
        return True
    except RequestError as exc:
        if exc.error != "resource_already_exists_exception":
            raise
        return False


def _index_schema(client: OpenSearch, index: str) -> int:
    mapping = client.indices.get_mapping(index=index)[index]["mappings"]
    return int(mapping.get("_meta", {}).get(SCHEMA_KEY, 0))


def _upgrade_if_stale(client: OpenSearch, alias: str, index: str, wanted: int) -> str | None:
    """Roll over when the write index was made from an older template; returns the new index."""
    if _index_schema(client, index) >= wanted:
        return None
    successor = next_index_name(index)
    try:
        client.indices.rollover(alias=alias, new_index=successor)
    except RequestError as exc:
        if exc.error != "resource_already_exists_exception":
            raise
        return None  # a concurrent worker did it
    log.info("span alias rolled over for a new schema", alias=alias, old=index, new=successor)
    return successor


def ensure_store(client: OpenSearch, settings: Settings) -> StoreState:
    """Install templates, alias, service map and lifecycle (idempotent); see the module doc."""
    names = store_names(settings)
    plugins = lifecycle.node_plugins(client)
    mode = lifecycle.choose_lifecycle(settings, plugins)
    codec = "zstd" if lifecycle.has_zstd(plugins) else "best_compression"
    template = span_template(settings, codec, ism=mode == "ism")
    client.indices.put_index_template(name=names.span_template, body=template)
    client.indices.put_index_template(
        name=names.service_map_template, body=service_map_template(settings)
    )
    install_metrics_template(client, settings)
    if mode == "ism":
        lifecycle.install_ism_policy(client, settings, names.span_alias)

    created = upgraded = False
    index = write_index(client, names.span_alias)
    if index is None:
        body = {"aliases": {names.span_alias: {"is_write_index": True}}}
        created = _create_ignoring_race(client, names.first_span_index, body)
        index = write_index(client, names.span_alias) or names.first_span_index
        if created:
            log.info("span index created", index=index, alias=names.span_alias)
    else:
        successor = _upgrade_if_stale(client, names.span_alias, index, schema_version(template))
        if successor is not None:
            index, upgraded = successor, True
    if not client.indices.exists(index=names.service_map_index):
        _create_ignoring_race(client, names.service_map_index, {})
    return StoreState(
        names.span_alias, index, names.service_map_index, mode, codec, created, upgraded
    )
