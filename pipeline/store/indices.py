"""OpenSearch layout of the trace store: names, index templates, the rollover alias.

Every name carries ``store_index_prefix`` (empty in production), so tests and tenants can
have stores of their own on one cluster. Installing them is ``pipeline.store.setup``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources

import orjson
from opensearchpy import OpenSearch

from pipeline.config.settings import SERVICE_MAP_INDEX, SPAN_ALIAS, Settings

# Package data of pipeline.schemas (the repository's schemas/ folder), found the same way
# in a checkout, an editable install and an installed wheel.
SCHEMAS = resources.files("pipeline.schemas")
SPAN_TEMPLATE_FILE = SCHEMAS / "otel-v1-apm-span-template.json"
SERVICE_MAP_TEMPLATE_FILE = SCHEMAS / "otel-v1-apm-service-map-template.json"
SCHEMA_KEY = "spansieve_schema"
_SEQUENCE = re.compile(r"-(\d+)$")


@dataclass(frozen=True)
class StoreNames:
    """Index, alias and template names, all under the configured prefix."""

    span_alias: str
    service_map_index: str

    @property
    def span_template(self) -> str:
        return self.span_alias

    @property
    def service_map_template(self) -> str:
        return self.service_map_index

    @property
    def first_span_index(self) -> str:
        return f"{self.span_alias}-000001"


def store_names(settings: Settings) -> StoreNames:
    prefix = settings.store_index_prefix
    return StoreNames(f"{prefix}{SPAN_ALIAS}", f"{prefix}{SERVICE_MAP_INDEX}")


def span_template(settings: Settings, codec: str = "best_compression", ism: bool = False) -> dict:
    """The span index template for these settings (patterns, shards, codec, ISM alias)."""
    names = store_names(settings)
    body = orjson.loads(SPAN_TEMPLATE_FILE.read_bytes())
    body["index_patterns"] = [f"{names.span_alias}-*"]
    index_settings = body["template"]["settings"]
    index_settings["index.number_of_shards"] = settings.store_shards
    index_settings["index.number_of_replicas"] = settings.store_replicas
    index_settings["index.refresh_interval"] = settings.store_refresh_interval
    index_settings["index.codec"] = codec
    if ism:
        # ISM's rollover action finds the alias here; the setting exists only with ISM.
        index_settings["plugins.index_state_management.rollover_alias"] = names.span_alias
    return body


def service_map_template(settings: Settings) -> dict:
    names = store_names(settings)
    body = orjson.loads(SERVICE_MAP_TEMPLATE_FILE.read_bytes())
    body["index_patterns"] = [names.service_map_index]
    body["template"]["settings"]["index.number_of_replicas"] = settings.store_replicas
    return body


def schema_version(template: dict) -> int:
    return int(template["template"]["mappings"]["_meta"][SCHEMA_KEY])


def next_index_name(index: str) -> str:
    """The rollover successor of ``<alias>-000042``: ``<alias>-000043``."""
    match = _SEQUENCE.search(index)
    if match is None:
        raise ValueError(f"{index!r} does not end in a rollover sequence number")
    digits = match.group(1)
    return f"{index[: match.start(1)]}{int(digits) + 1:0{len(digits)}d}"


def write_index(client: OpenSearch, alias: str) -> str | None:
    """The index the alias writes to, or None when the alias does not exist."""
    found = client.indices.get_alias(name=alias, ignore=404)
    if found.get("status") == 404:
        return None
    for index, body in found.items():
        if body["aliases"][alias].get("is_write_index"):
            return index
    # An alias over a single index without the flag still writes there.
    return next(iter(found)) if len(found) == 1 else None


def trace_span_count(client: OpenSearch, trace_id: str, alias: str = SPAN_ALIAS) -> int:
    """How many span documents of a trace are searchable now (0 before the index exists)."""
    if not client.indices.exists_alias(name=alias):
        return 0
    result = client.count(index=alias, body={"query": {"term": {"traceId": trace_id}}})
    return int(result["count"])
