"""Query benchmark: how long the query server takes to answer, next to the bare OpenSearch
requests it makes for the same answer (the ceiling), and what RBAC adds, on a store of
over a million spans, measured in the same run.

The store (``pipeline.bench.query_store``): ``traces`` traces of the load generator's
30-service estate (92 000 by default: over 1 M spans), spread over the last 75 minutes in
one hot, unmerged span index, and the span metrics (RED and service graph, 15 s windows)
the worker would have counted from them in a private metrics store. Two real
``spansieve query`` processes serve it: one with RBAC off, one with RBAC on (a roles file
granting the token ``half`` a glob of half the services for every action, and ``sre``
every service). Requests go one at a time (latency, not load), each measurement
interleaving its two sides on the same argument (the side going first alternates), so
drifting machine load and warm caches favour neither:

* **trace by id**: ``GET /api/traces/{id}`` for random ids; bare: the routed ``terms``
  search on ``traceId`` the server sends.
* **search**: ``GET /api/traces?service=S&limit=20``; bare: its two requests, the
  collapsed search that picks the 20 most recent traces and the routed fetch of their
  spans.
* **search by tag and trace duration**: the same with ``tag=http.response.status_code:200``
  and ``minDuration=20ms`` (the trace's duration), on services whose spans carry the tag.
* **services page**: what the web UI's services page loads for the last hour:
  ``/api/services``, then ``/api/metrics/calls``, ``/errors`` and
  ``/latencies?quantile=0.95`` for every listed service at once (``service`` repeated),
  ``lookback`` 1 h, ``step`` and ``ratePer`` 1 min, one after another (the UI sends the
  three metrics requests at once: this is the page's total work, an upper bound of its
  wait). Bare: the services aggregation and the paged composite aggregations of
  ``pipeline.query.spm`` (its own body builders). The span index's request cache is
  cleared before each page (untimed, both sides): a hot index is refreshed every few
  seconds, which empties it, while this one is not written to.
* **SPM calls**: ``/api/metrics/calls?service=S&groupByOperation=true&lookback=3600000&
  step=60000`` (``ratePer`` Jaeger's default 10 min); bare: the same aggregation pages.
* **RBAC**: the same five kinds against the RBAC-off and the RBAC-on server, alternating,
  all with the ``half`` token: trace by id of traces crossing from granted into foreign
  services (so placeholders are made), searches, services page and SPM calls on granted
  services (the services page asks both servers for the granted services' metrics).

Each kind is measured ours against bare, then RBAC off against on; the services page
comes last, as the heaviest (a request that trips a circuit breaker on the local 1 GB node
fails the next ones too).

The difference from bare is the server's own cost: HTTP, parsing, shaping Jaeger JSON,
clock-skew correction. Call ``bench_query(Settings(), folder)`` on a running local stack.

Result keys (milliseconds; ratios are ours / bare or on / off; a measurement where calls
failed, an OpenSearch circuit breaker say, has ``failed`` (calls per side), the first
``error``, percentiles of the calls that succeeded and NaN ratios, and stops after
``MAX_FAILURES`` on one side):

* ``workload``: ``source``, ``traces``, ``spans`` (exact), ``services``,
  ``crossing_traces``, ``traffic_minutes``, ``metric_documents``, ``red_documents``,
  ``requests`` (timed per side and kind), ``seed``; ``fill_seconds``, ``measure_seconds``
  (wall time of filling the store and of the requests); ``store_prefix``;
  ``search_limit``; ``min_duration_ms``.
* ``trace_by_id``, ``search``, ``search_tag_duration``, ``services_page``, ``spm_calls``:
  ``p50_ms``, ``p95_ms``, ``p99_ms``, ``bare_p50_ms``, ``bare_p95_ms``, ``bare_p99_ms``,
  ``ratio_p50``, ``ratio_p95``; ``seconds`` (the measurement's wall time).
* ``rbac``: ``granted`` (the glob), ``granted_services``, ``placeholders_per_trace`` (of
  the crossing traces, as the RBAC-on server answers them), and per kind as above
  ``off_p50_ms``, ``off_p95_ms``, ``off_p99_ms``, ``on_p50_ms``, ``on_p95_ms``,
  ``on_p99_ms``, ``ratio_p50``, ``ratio_p95``, ``seconds``.
* ``rbac_added_p50`` / ``rbac_added_p95``: the worst kind's on / off ratio minus 1 (the
  acceptance asks at most 0.10 at p50), of the kinds measured without failures;
  ``rbac_worst_kind``: that kind at p50.
"""

from __future__ import annotations

import math
import random
import secrets
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from opensearchpy import OpenSearch
from opensearchpy.exceptions import OpenSearchException
from rich.console import Console

from pipeline.bench.query_store import (
    DEFAULT_TRACES,
    TAG,
    TRAFFIC_MINUTES,
    QueryStore,
    describe,
    estate_services,
    fill_store,
    half_glob,
    matcher,
    progress,
)
from pipeline.bench.stats import quantile
from pipeline.config.settings import Settings
from pipeline.local.run import free_port, start_component, stop_components, wait_until
from pipeline.query.params import TraceQuery
from pipeline.query.rbac.placeholders import HIDDEN
from pipeline.query.search import (
    PAGE_SIZE,
    SEARCH_OPTIONS,
    collapsed_trace_ids,
    routing,
    services_body,
    trace_search_body,
    trace_spans_body,
)
from pipeline.query.spm import (
    CALL_SUMS,
    CALLS_METRIC,
    MetricsQuery,
    histograms_body,
    metrics_pattern,
    series_body,
)
from pipeline.query.spm import PAGE_SIZE as SPM_PAGE_SIZE
from pipeline.store.indices import store_names

SEARCH_LIMIT = 20
MIN_DURATION_MS = 20  # about a fifth of the estate's traces last longer
WARM = 2  # untimed rounds before each measurement
MAX_FAILURES = 2  # failed calls of one side that end a measurement
FAILURE_PAUSE = 2.0  # seconds after a failed call (lets the node collect its garbage)
HOUR_MS = 3_600_000
MINUTE_MS = 60_000
QUANTILE = "0.95"
# The services page's window as the UI asks for its lines; SPM calls with Jaeger's ratePer.
PAGE_WINDOW = [("lookback", str(HOUR_MS)), ("step", str(MINUTE_MS)), ("ratePer", str(MINUTE_MS))]
SPM_WINDOW = [("groupByOperation", "true"), ("lookback", str(HOUR_MS)), ("step", str(MINUTE_MS))]
KINDS = ("trace_by_id", "search", "search_tag_duration", "services_page", "spm_calls")
# The heaviest last: a request that tripped the node's circuit breaker would leave its heap
# full of garbage for a while, failing whatever came next.
MEASURED_ORDER = ("trace_by_id", "search", "search_tag_duration", "spm_calls", "services_page")

JSON = dict[str, Any]
Call = Callable[[Any], object]


def _since(started: float) -> float:
    return time.perf_counter() - started


def _now_ms() -> int:
    return int(time.time() * 1000)


class RequestFailed(Exception):
    """A request the query server answered with an error (its message in the body)."""


class _Api:
    """The requests the web UI and Jaeger clients send to one query server."""

    def __init__(self, http: httpx.Client, headers: dict[str, str]) -> None:
        self.http = http
        self.headers = headers

    def _get(self, path: str, params: Any = None) -> httpx.Response:
        reply = self.http.get(path, params=params, headers=self.headers)
        if reply.status_code >= 400:
            raise RequestFailed(f"{path}: HTTP {reply.status_code}: {reply.text[:300]}")
        return reply

    def trace(self, trace_id: str) -> httpx.Response:
        return self._get(f"/api/traces/{trace_id}")

    def search(self, params: dict[str, Any]) -> None:
        self._get("/api/traces", params)

    def services_page(self, keep: Callable[[str], bool]) -> None:
        """The services list, then the three figures of the listed services ``keep``
        lets through."""
        services = [s for s in self._get("/api/services").json()["data"] if keep(s)]
        window = [("service", service) for service in services] + PAGE_WINDOW
        self._get("/api/metrics/calls", window)
        self._get("/api/metrics/errors", window)
        self._get("/api/metrics/latencies", [*window, ("quantile", QUANTILE)])

    def spm_calls(self, service: str) -> None:
        self._get("/api/metrics/calls", [("service", service), *SPM_WINDOW])


class _Bare:
    """The OpenSearch requests the query server sends, sent directly."""

    def __init__(self, client: OpenSearch, alias: str, metrics: str) -> None:
        self.client = client
        self.alias = alias
        self.metrics = metrics

    def _search(self, index: str, body: JSON, trace_ids: Sequence[str] = ()) -> JSON:
        found = routing(trace_ids) if trace_ids else None
        return self.client.search(index=index, body=body, routing=found, **SEARCH_OPTIONS)

    def spans(self, trace_ids: list[str]) -> None:
        self._search(self.alias, {**trace_spans_body(trace_ids), "size": PAGE_SIZE}, trace_ids)

    def trace(self, trace_id: str) -> None:
        self.spans([trace_id])

    def search(self, query: TraceQuery) -> None:
        ids = collapsed_trace_ids(self._search(self.alias, trace_search_body(query)))
        if ids:
            self.spans(ids)

    def services(self) -> list[str]:
        answer = self._search(self.alias, services_body())
        buckets = (answer.get("aggregations") or {}).get("services", {}).get("buckets", [])
        return sorted(bucket["key"] for bucket in buckets)

    def series(self, query: MetricsQuery, metric: str, sums: JSON) -> None:
        """Every page of ``spm.series_body``, as ``SpmReader.buckets`` reads them."""
        after = None
        while True:
            body = series_body(query, metric, sums, after, SPM_PAGE_SIZE)
            answer = self._search(self.metrics, body)
            series = (answer.get("aggregations") or {}).get("series") or {}
            after = series.get("after_key")
            if len(series.get("buckets", [])) < SPM_PAGE_SIZE or after is None:
                return

    def services_page(self) -> None:
        services = tuple(self.services())
        query = MetricsQuery(
            services, end=_now_ms(), lookback=HOUR_MS, step=MINUTE_MS, rate_per=MINUTE_MS
        )
        self.series(query, CALLS_METRIC, CALL_SUMS)  # calls
        self.series(query, CALLS_METRIC, CALL_SUMS)  # errors: the same request
        self._search(self.metrics, histograms_body(query))  # latencies

    def spm_calls(self, service: str) -> None:
        query = MetricsQuery(
            (service,), group_by_operation=True, end=_now_ms(), lookback=HOUR_MS, step=MINUTE_MS
        )
        self.series(query, CALLS_METRIC, CALL_SUMS)


@dataclass
class _Side:
    """One side's timings of one measurement, and the calls that failed."""

    times: list[float] = field(default_factory=list)
    failed: int = 0
    error: str | None = None


def _interleaved(
    sides: Sequence[Call],
    args: Sequence[Any],
    tick: Callable[[int], object],
    before: Callable[[], object] | None = None,
) -> list[_Side]:
    """Milliseconds of each side on each argument after the first ``WARM`` (untimed):
    the sides take turns on the same argument, the one going first rotating.

    A failed call (an OpenSearch error, the server's 5xx) is counted, not timed, and
    followed by a pause; after ``MAX_FAILURES`` on one side the measurement stops: on a
    shared node a request that trips a circuit breaker would trip it again.
    """
    found = [_Side() for _ in sides]
    for n, arg in enumerate(args):
        if any(side.failed >= MAX_FAILURES for side in found):
            tick(len(sides) * (len(args) - n))
            break
        for turn in range(len(sides)):
            which = (n + turn) % len(sides)
            try:
                if before is not None:
                    before()
                started = time.perf_counter()
                sides[which](arg)
            except (RequestFailed, httpx.HTTPError, OpenSearchException) as exc:
                found[which].failed += 1
                found[which].error = found[which].error or str(exc)[:400]
                time.sleep(FAILURE_PAUSE)
            else:
                if n >= WARM:
                    found[which].times.append((time.perf_counter() - started) * 1e3)
            tick(1)
    return found


def _figures(samples: list[float], prefix: str) -> dict[str, float]:
    return {f"{prefix}p{q}_ms": quantile(samples, q / 100) for q in (50, 95, 99)}


def _ratio(top: float, bottom: float) -> float:
    return top / bottom if bottom else float("nan")


def _failures(names: tuple[str, str], sides: list[_Side]) -> dict[str, Any]:
    """``failed`` (per side) and the first ``error``, only when some call failed."""
    if not any(side.failed for side in sides):
        return {}
    error = next(side.error for side in sides if side.error)
    return {
        "failed": {n: side.failed for n, side in zip(names, sides, strict=True)},
        "error": error,
    }


def _compared(names: tuple[str, str], top: _Side, bottom: _Side) -> dict[str, Any]:
    """Percentiles of both sides and their ratios, ``top`` over ``bottom`` (NaN when a
    call of either side failed: what remains is no like-for-like sample)."""
    prefixes = {"ours": "", "bare": "bare_", "on": "on_", "off": "off_"}
    first, second = (prefixes[name] for name in names)
    found: dict[str, Any] = {**_figures(top.times, first), **_figures(bottom.times, second)}
    failures = _failures(names, [top, bottom])
    for q in (50, 95):
        ratio = _ratio(found[f"{first}p{q}_ms"], found[f"{second}p{q}_ms"])
        found[f"ratio_p{q}"] = math.nan if failures else ratio
    return {**found, **failures}


def _against_bare(ours: _Side, bare: _Side) -> dict[str, Any]:
    return _compared(("ours", "bare"), ours, bare)


def _on_off(off: _Side, on: _Side) -> dict[str, Any]:
    return _compared(("on", "off"), on, off)


def _worst(rbac: dict[str, Any], q: int) -> str | None:
    """The kind whose RBAC on / off ratio at ``q`` is highest (of those measured)."""
    known = [kind for kind in KINDS if not math.isnan(rbac[kind][f"ratio_p{q}"])]
    return max(known, key=lambda kind: rbac[kind][f"ratio_p{q}"], default=None)


def _drop(client: OpenSearch, prefix: str, patience: float = 120.0) -> None:
    """Delete the private indices and templates, retrying while the node refuses (a
    circuit breaker tripped by a heavy request answers 429 for a while)."""
    deadline = time.monotonic() + patience
    while True:
        try:
            client.indices.delete(
                index=f"{prefix}*", ignore_unavailable=True, expand_wildcards="all"
            )
            client.indices.delete_index_template(name=f"{prefix}*", ignore=404)
            return
        except OpenSearchException:
            if time.monotonic() > deadline:
                raise
            time.sleep(2.0)


def _healthy(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def _rbac_files(folder: Path, glob: str) -> tuple[Path, Path, str]:
    """(roles file, tokens file, the restricted token)."""
    folder.mkdir(parents=True, exist_ok=True)
    roles, tokens = folder / "roles.yaml", folder / "tokens"
    roles.write_text(
        "roles:\n"
        f'  half:\n    services: ["{glob}"]\n    actions: ["*"]\n'
        '  sre:\n    services: ["*"]\n    actions: ["*"]\n'
    )
    token = secrets.token_hex(16)
    tokens.write_text(f"{token} bench-half half\n{secrets.token_hex(16)} bench-sre sre\n")
    return roles, tokens, token


def _some(rng: random.Random, pool: Sequence[Any], fallback: Sequence[Any], count: int) -> list:
    """``count`` random picks of ``pool`` (of ``fallback`` when the pool is empty)."""
    chosen = pool or fallback
    return [rng.choice(chosen) for _ in range(count)]


def bench_query(
    settings: Settings,
    folder: Path,
    traces: int = DEFAULT_TRACES,
    requests: int = 200,
    seed: int = 5,
) -> dict[str, Any]:
    """Fill the store, start both servers, measure; see the module doc."""
    prefix = f"bench-{uuid.uuid4().hex[:8]}-q-"
    ours = settings.model_copy(update={"store_index_prefix": prefix, "store_lifecycle": "worker"})
    alias = store_names(ours).span_alias
    client = OpenSearch(hosts=[settings.opensearch_url], timeout=120)
    services = estate_services()
    glob = half_glob(services)
    granted = matcher(glob)
    roles, tokens, token = _rbac_files(folder / "rbac", glob)
    off = ours.model_copy(update={"query_port": free_port(), "state_dir": folder / "off"})
    on = ours.model_copy(
        update={
            "query_port": free_port(),
            "state_dir": folder / "on",
            "query_roles": roles,
            "query_tokens_file": tokens,
        }
    )
    children = []
    try:
        store = fill_store(client, ours, traces, seed, granted)
        Console(stderr=True).print(describe(store))
        for server in (off, on):
            children.append(start_component("query", server))
        for server in (off, on):
            url = f"http://127.0.0.1:{server.query_port}/healthz"
            if not wait_until(lambda url=url: _healthy(url), "query server starting", 60):
                raise RuntimeError(f"query server did not start; see {server.state_dir}/logs")
        bare = _Bare(client, alias, metrics_pattern(ours))
        with (
            httpx.Client(base_url=f"http://127.0.0.1:{off.query_port}", timeout=120) as http_off,
            httpx.Client(base_url=f"http://127.0.0.1:{on.query_port}", timeout=120) as http_on,
        ):
            bearer = {"Authorization": f"Bearer {token}"}
            measuring = time.perf_counter()
            measured = _measure(
                _Api(http_off, {}),
                _Api(http_off, bearer),
                _Api(http_on, bearer),
                bare,
                store,
                granted,
                requests,
                random.Random(seed),
            )
            measured["seconds"] = time.perf_counter() - measuring
    finally:
        stop_components(children)
        _drop(client, prefix)
    rbac = measured["rbac"]
    rbac.update(granted=glob, granted_services=sum(map(granted, store.services)))
    worst = _worst(rbac, 50)
    added = {}
    for q in (50, 95):
        kind = _worst(rbac, q)
        added[q] = rbac[kind][f"ratio_p{q}"] - 1 if kind else math.nan
    return {
        "workload": {
            "source": "estate-30",
            "traces": len(store.trace_ids),
            "spans": store.spans,
            "services": len(store.services),
            "crossing_traces": len(store.crossing_ids),
            "traffic_minutes": TRAFFIC_MINUTES,
            "metric_documents": store.metric_documents,
            "red_documents": store.red_documents,
            "requests": requests,
            "seed": seed,
        },
        "fill_seconds": store.seconds,
        "measure_seconds": measured["seconds"],
        "store_prefix": prefix,
        "search_limit": SEARCH_LIMIT,
        "min_duration_ms": MIN_DURATION_MS,
        **{kind: measured[kind] for kind in KINDS},
        "rbac": rbac,
        "rbac_added_p50": added[50],
        "rbac_added_p95": added[95],
        "rbac_worst_kind": worst,
    }


def _measure(
    api: _Api,
    off: _Api,
    on: _Api,
    bare: _Bare,
    store: QueryStore,
    granted: Callable[[str], bool],
    requests: int,
    rng: random.Random,
) -> dict[str, Any]:
    """Ours against bare, then RBAC off against on, for every kind of request."""
    count = requests + WARM
    if not store.crossing_ids:
        raise RuntimeError("no stored trace crosses from granted into foreign services")
    tagged = {"tag": f"{TAG[0]}:{TAG[1]}", "minDuration": f"{MIN_DURATION_MS}ms"}
    tagged_query = {"tags": (TAG,), "min_duration": MIN_DURATION_MS * 1_000_000}
    mine = [s for s in store.services if granted(s)]

    def search(http: _Api, extra: dict[str, str]) -> Call:
        return lambda service: http.search({"service": service, "limit": SEARCH_LIMIT, **extra})

    def bare_search(extra: dict[str, Any]) -> Call:
        return lambda service: bare.search(TraceQuery(service=service, limit=SEARCH_LIMIT, **extra))

    def clear_cache() -> None:
        bare.client.indices.clear_cache(index=bare.alias, request=True)

    def everything(_service: str) -> bool:
        return True

    against_bare: dict[str, tuple[Call, Call, list, Callable[[], object] | None]] = {
        "trace_by_id": (api.trace, bare.trace, _some(rng, store.trace_ids, [], count), None),
        "search": (search(api, {}), bare_search({}), _some(rng, store.services, [], count), None),
        "search_tag_duration": (
            search(api, tagged),
            bare_search(tagged_query),
            _some(rng, store.tagged_services, store.services, count),
            None,
        ),
        "services_page": (
            lambda _: api.services_page(everything),
            lambda _: bare.services_page(),
            [None] * count,
            clear_cache,
        ),
        "spm_calls": (
            api.spm_calls,
            bare.spm_calls,
            _some(rng, store.server_services, store.services, count),
            None,
        ),
    }
    on_off: dict[str, tuple[Call, Call, list, Callable[[], object] | None]] = {
        "trace_by_id": (off.trace, on.trace, _some(rng, store.crossing_ids, [], count), None),
        "search": (search(off, {}), search(on, {}), _some(rng, mine, [], count), None),
        "search_tag_duration": (
            search(off, tagged),
            search(on, tagged),
            _some(rng, [s for s in store.tagged_services if granted(s)], mine, count),
            None,
        ),
        "services_page": (
            lambda _: off.services_page(granted),
            lambda _: on.services_page(granted),
            [None] * count,
            clear_cache,
        ),
        "spm_calls": (
            off.spm_calls,
            on.spm_calls,
            _some(rng, [s for s in store.server_services if granted(s)], mine, count),
            None,
        ),
    }
    results: dict[str, Any] = {}
    rbac: dict[str, Any] = {"placeholders_per_trace": _placeholders(on, store.crossing_ids)}
    with progress("{task.completed:,}/{task.total:,} requests") as bar:
        task = bar.add_task("query bench requests", total=4 * count * len(KINDS))

        def tick(done: int) -> None:
            bar.advance(task, done)

        for kind in MEASURED_ORDER:
            ours_call, bare_call, args, before = against_bare[kind]
            started = time.perf_counter()
            ours_ms, bare_ms = _interleaved((ours_call, bare_call), args, tick, before)
            results[kind] = {**_against_bare(ours_ms, bare_ms), "seconds": _since(started)}
            off_call, on_call, args, before = on_off[kind]
            started = time.perf_counter()
            off_ms, on_ms = _interleaved((off_call, on_call), args, tick, before)
            rbac[kind] = {**_on_off(off_ms, on_ms), "seconds": _since(started)}
    results["rbac"] = rbac
    return results


def _placeholders(on: _Api, crossing: list[str], sample: int = 10) -> float:
    """Placeholder spans per trace in the RBAC-on server's answers for a few crossing
    traces (untimed): proof that the measured lookups mask foreign spans."""
    chosen = crossing[:sample]
    hidden = 0
    for trace_id in chosen:
        [trace] = on.trace(trace_id).json()["data"]
        hidden += sum(1 for span in trace["spans"] if span["operationName"] == HIDDEN)
    return hidden / len(chosen) if chosen else 0.0
