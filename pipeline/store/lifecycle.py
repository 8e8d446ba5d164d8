"""Lifecycle of the span indices: roll over daily or at a size, delete after the retention.

Two ways to the same behaviour, picked by ``store_lifecycle`` (``auto`` detects):

* **ISM** (production): OpenSearch's Index State Management plugin runs the policy in
  ``schemas/otel-v1-apm-span-ism-policy.json`` inside the cluster, whatever workers run.
* **worker** (nodes without the ISM plugin, e.g. the local stack's runner, which loads no
  plugins): the sink role's group leader calls ``run_worker_lifecycle`` on a timer. It uses
  only core APIs: ``_rollover`` with ``max_age``/``max_size`` conditions, and deleting
  rolled-over indices whose last write (the rollover time) is older than the retention.

Either way an index is deleted only once its *newest* span is older than the retention,
so every span is kept at least that long.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Literal

import orjson
import structlog
from opensearchpy import OpenSearch
from opensearchpy.exceptions import ConflictError, NotFoundError, RequestError

from pipeline.config.settings import Settings
from pipeline.store.indices import SCHEMAS, write_index

log = structlog.get_logger(__name__)

ISM_POLICY_FILE = "otel-v1-apm-span-ism-policy.json"
ISM_POLICIES = "/_plugins/_ism/policies"

Lifecycle = Literal["ism", "worker"]


class LifecycleError(Exception):
    """The configured lifecycle cannot run on this cluster (message says what to do)."""


@dataclass
class LifecycleReport:
    """What one worker-lifecycle pass did."""

    rolled_over_to: str | None = None
    deleted: list[str] = field(default_factory=list)


def node_plugins(client: OpenSearch) -> set[str]:
    """Lower-cased plugin names (or class names, as the runner reports them) of the cluster."""
    rows = client.cat.plugins(format="json", h="component")
    return {row["component"].lower() for row in rows}


def has_ism(plugins: set[str]) -> bool:
    return any("index-management" in p or "indexmanagement" in p for p in plugins)


def has_zstd(plugins: set[str]) -> bool:
    return any("custom-codecs" in p or "customcodec" in p for p in plugins)


def choose_lifecycle(settings: Settings, plugins: set[str]) -> Lifecycle:
    """``store_lifecycle``, with ``auto`` resolved by whether the node has ISM."""
    wanted = settings.store_lifecycle
    if wanted == "worker":
        return "worker"
    if has_ism(plugins):
        return "ism"
    if wanted == "ism":
        raise LifecycleError(
            "SPANSIEVE_STORE_LIFECYCLE=ism, but the OpenSearch node has no Index State "
            "Management plugin: install opensearch-index-management, or use 'worker'."
        )
    return "worker"


def retention_seconds(settings: Settings) -> float:
    return settings.store_retention_days * 86_400


def ism_policy_id(alias: str) -> str:
    return f"{alias}-lifecycle"


def ism_policy(settings: Settings, alias: str) -> dict:
    """The ISM policy body for these settings (ages, size, index pattern)."""
    body = orjson.loads((SCHEMAS / ISM_POLICY_FILE).read_bytes())
    policy = body["policy"]
    hot, _delete = policy["states"]
    rollover = hot["actions"][0]["rollover"]
    rollover["min_index_age"] = settings.store_rollover_age
    rollover["min_size"] = settings.store_rollover_size
    retention = f"{round(retention_seconds(settings))}s"
    hot["transitions"][0]["conditions"] = {"min_rollover_age": retention}
    policy["ism_template"][0]["index_patterns"] = [f"{alias}-*"]
    return body


def install_ism_policy(client: OpenSearch, settings: Settings, alias: str) -> str:
    """Create or update the ISM policy and attach it to existing span indices.

    Returns "created", "updated" or "unchanged". New indices pick the policy up through
    its ``ism_template``; ``_ism/add`` covers indices made before the policy existed.
    """
    policy_id = ism_policy_id(alias)
    wanted = ism_policy(settings, alias)
    path = f"{ISM_POLICIES}/{policy_id}"
    try:
        current = client.transport.perform_request("GET", path)
    except NotFoundError:
        current = None
    try:
        if current is None:
            client.transport.perform_request("PUT", path, body=wanted)
            outcome = "created"
        elif _policy_differs(current["policy"], wanted["policy"]):
            params = {"if_seq_no": current["_seq_no"], "if_primary_term": current["_primary_term"]}
            client.transport.perform_request("PUT", path, params=params, body=wanted)
            outcome = "updated"
        else:
            outcome = "unchanged"
    except ConflictError:
        # Another worker created or updated it between our GET and PUT (they start together).
        outcome = "unchanged"
    client.transport.perform_request(
        "POST", f"/_plugins/_ism/add/{alias}-*", body={"policy_id": policy_id}
    )
    log.info("ism policy installed", policy=policy_id, outcome=outcome)
    return outcome


# Fields ISM writes into a stored policy when the request left them out (ISM 2.19 serializes
# every rollover action with copy_alias, every action with a retry), with those defaults.
_ISM_DEFAULTS: dict[str, object] = {
    "copy_alias": False,
    "retry": {"count": 3, "backoff": "exponential", "delay": "1m"},
}


def _same(current: object, wanted: object) -> bool:
    """Whether a stored policy part equals ours, ignoring fields ISM filled with its defaults."""
    if isinstance(current, dict) and isinstance(wanted, dict):
        extra = current.keys() - wanted.keys()
        if any(key not in _ISM_DEFAULTS or current[key] != _ISM_DEFAULTS[key] for key in extra):
            return False
        return all(key in current and _same(current[key], wanted[key]) for key in wanted)
    if isinstance(current, list) and isinstance(wanted, list):
        return len(current) == len(wanted) and all(map(_same, current, wanted))
    return current == wanted


def _policy_differs(current: dict, wanted: dict) -> bool:
    keys = ("description", "default_state", "states")
    if any(not _same(current.get(key), wanted[key]) for key in keys):
        return True
    fields = ("index_patterns", "priority")
    templates = [{f: t.get(f) for f in fields} for t in current.get("ism_template") or []]
    return templates != [{f: t[f] for f in fields} for t in wanted["ism_template"]]


# --- the worker's fallback -----------------------------------------------------------------


def rollover_if_due(client: OpenSearch, settings: Settings, alias: str) -> str | None:
    """Core ``_rollover`` with age and size conditions; the new index when it rolled over."""
    conditions = {"max_age": settings.store_rollover_age, "max_size": settings.store_rollover_size}
    try:
        result = client.indices.rollover(alias=alias, body={"conditions": conditions})
    except RequestError as exc:
        if exc.error == "resource_already_exists_exception":
            return None  # another worker rolled over in the same instant
        raise
    if not result.get("rolled_over"):
        return None
    met = [name for name, hit in result["conditions"].items() if hit]
    log.info("span alias rolled over", alias=alias, new=result["new_index"], conditions=met)
    return result["new_index"]


def expired_indices(client: OpenSearch, alias: str, retention: float, now: float) -> list[str]:
    """Span indices (``<alias>-*``) whose last write is older than ``retention`` seconds.

    The last write of a rolled-over index is its rollover time; an index of the pattern
    that never rolled over (detached by hand) counts from its creation. The alias's write
    index is never expired.
    """
    state = client.cluster.state(
        metric="metadata",
        index=f"{alias}-*",
        filter_path=[
            "metadata.indices.*.settings.index.creation_date",
            "metadata.indices.*.rollover_info",
        ],
    )
    indices = state.get("metadata", {}).get("indices", {})
    current = write_index(client, alias)
    expired = []
    for name, meta in indices.items():
        if name == current:
            continue
        created = int(meta["settings"]["index"]["creation_date"]) / 1000
        rolled = (meta.get("rollover_info") or {}).get(alias)
        last_write = rolled["time"] / 1000 if rolled else created
        if now - last_write > retention:
            expired.append(name)
    return sorted(expired)


def run_worker_lifecycle(
    client: OpenSearch, settings: Settings, alias: str, now: float | None = None
) -> LifecycleReport:
    """One pass of the worker's lifecycle: roll over when due, delete what expired."""
    report = LifecycleReport(rolled_over_to=rollover_if_due(client, settings, alias))
    now = time.time() if now is None else now
    expired = expired_indices(client, alias, retention_seconds(settings), now)
    if expired:
        client.indices.delete(index=",".join(expired), ignore_unavailable=True)
        log.info("expired span indices deleted", indices=expired, alias=alias)
        report.deleted = expired
    return report
