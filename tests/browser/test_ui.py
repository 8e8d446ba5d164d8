"""The web UI of `spansieve query` in headless Chromium, over a private store.

Five traces (one of 1 201 spans) are indexed directly (the sink's encoder and ``_bulk``
body) behind a private ``uitest-<random>-`` prefix, with span metrics of the last hour
(the metrics store's documents) and log records (a Data Prepper-shaped logs index); a
real `spansieve query` process serves the API and the UI; Selenium drives Chromium
through search, filters, the back button, the timeline and its critical path, span
details, collapsing, the error messages, the services page, the service map and a
trace's log records. The page's state is read with one script per check (no stale
elements); the console must stay free of script errors.

With ``SPANSIEVE_SCREENSHOTS=<dir>`` the services page, the map and a trace are saved
there as PNGs (the README's screenshots come from this).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from opensearchpy import OpenSearch
from selenium.common.exceptions import StaleElementReferenceException, TimeoutException
from selenium.webdriver.chrome.webdriver import WebDriver
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import Select, WebDriverWait

from pipeline.config.settings import Settings
from pipeline.local.run import free_port, start_component, stop_components, wait_until
from pipeline.sink.bulk import Doc, bulk_body
from pipeline.sink.documents import encoded_documents
from pipeline.store.indices import store_names
from pipeline.store.lifecycle import ISM_POLICIES, has_ism, ism_policy_id, node_plugins
from pipeline.store.setup import ensure_store
from tests.browser.conftest import MISSING, SKIP_REASON
from tests.browser.observability import (
    Operation,
    index_logs,
    log_document,
    red_documents,
    window_starts,
)
from tests.integration.test_query_spm import index_documents
from tests.integration.trace_builder import MS, TraceBuilder

pytestmark = [
    pytest.mark.integration,
    pytest.mark.browser,
    pytest.mark.skipif(bool(MISSING), reason=SKIP_REASON),
]

WAIT = 10  # seconds for the page to reach an expected state


def build_traces() -> dict[str, TraceBuilder]:
    cart = TraceBuilder(0)
    cart.span("frontend", "GET /cart", ms=50, attributes={"http.response.status_code": 200})
    cart.span("cart", "cart.get", "GET /cart", at=1, ms=48)
    cart.span("cart", "SELECT cart", "cart.get", at=2, ms=5, attributes={"db.system": "pg"})

    checkout = TraceBuilder(1_000)
    checkout.span("frontend", "POST /checkout", ms=400)
    checkout.span("cart", "cart.get", "POST /checkout", at=2, ms=20)
    checkout.span("cart", "SELECT cart", "cart.get", at=3, ms=5)
    charge = checkout.span(
        "payment",
        "charge",
        "POST /checkout",
        at=30,
        ms=360,
        error=True,
        attributes={"payment.amount": 12.5},
        resource={"deployment.environment": "prod"},
    )
    charge.events.add(name="retry", time_unix_nano=checkout.start + 140 * MS)
    checkout.span("payment", "card.authorize", "charge", key="auth1", at=40, ms=100)
    checkout.span("payment", "card.authorize", "charge", key="auth2", at=150, ms=200)

    search = TraceBuilder(2_000)
    search.span("frontend", "GET /search", ms=120, attributes={"http.response.status_code": 201})
    search.span("search", "query", "GET /search", at=10, ms=100)

    # 1 + 40 + 40 * 29 = 1 201 spans: the timeline must stay usable at this size.
    big = TraceBuilder(3_000)
    big.span("bulk", "batch.run", ms=5_000)
    for chunk in range(40):
        big.span("bulk", "chunk", "batch.run", key=f"c{chunk}", at=1 + chunk * 120, ms=110)
        for item in range(29):
            at = 2 + chunk * 120 + item * 3
            big.span("bulk", "item", f"c{chunk}", key=f"c{chunk}i{item}", at=at, ms=2)
    # Parallel shards: only the one that finished last (and its cache call) holds the
    # root up, so the critical path leaves the other two out.
    fanout = TraceBuilder(4_000)
    fanout.span("search", "search.fanout", ms=100)
    fanout.span("index", "shard.query", "search.fanout", key="shard1", at=5, ms=35)
    fanout.span("index", "shard.query", "search.fanout", key="shard2", at=5, ms=85)
    fanout.span("index", "shard.query", "search.fanout", key="shard3", at=50, ms=20)
    fanout.span("cache", "cache.get", "shard2", at=60, ms=25)
    return {"cart": cart, "checkout": checkout, "search": search, "big": big, "fanout": fanout}


TRACES = build_traces()
SPAN_COUNTS = {"cart": 3, "checkout": 6, "search": 2, "big": 1_201, "fanout": 5}


def operations() -> list[Operation]:
    """Span metrics per window (one a minute): the traces' operations, steady traffic."""
    t = {name: builder.trace_id for name, builder in TRACES.items()}
    return [
        Operation("frontend", "GET /cart", 3, 30, t["cart"]),
        Operation("frontend", "POST /checkout", 1, 380, t["checkout"]),
        Operation("frontend", "GET /search", 2, 110, t["search"]),
        Operation("cart", "cart.get", 4, 20, t["cart"]),
        Operation("cart", "SELECT cart", 4, 4, t["cart"]),
        Operation("payment", "charge", 1, 350, t["checkout"], fail_every=5),
        Operation("payment", "card.authorize", 2, 120, t["checkout"]),
        Operation("search", "query", 2, 90, t["search"]),
        Operation("search", "search.fanout", 1, 95, t["fanout"]),
        Operation("index", "shard.query", 3, 40, t["fanout"]),
        Operation("cache", "cache.get", 1, 20, t["fanout"]),
    ]


def log_records() -> list[dict[str, Any]]:
    """Log records of the checkout and fan-out traces, and one of the cart trace."""
    checkout, fanout, cart = TRACES["checkout"], TRACES["fanout"], TRACES["cart"]
    root, charge = checkout.ids["POST /checkout"], checkout.ids["charge"]
    at = checkout.start
    return [
        log_document(checkout.trace_id, root, "frontend", at + 1 * MS, "INFO",
                     "checkout started", {"user.id": "u-42", "cart.items": 3}),
        log_document(checkout.trace_id, charge, "payment", at + 140 * MS, "WARN",
                     "card authorization timed out, retrying", {"retry.count": 1}),
        log_document(checkout.trace_id, charge, "payment", at + 389 * MS, "ERROR",
                     "card declined", {"payment.provider": "acme"}),
        log_document(checkout.trace_id, None, "frontend", at + 400 * MS, "INFO",
                     "order audit written"),
        log_document(cart.trace_id, cart.ids["GET /cart"], "frontend", cart.start + MS,
                     "INFO", "cart viewed"),
        log_document(fanout.trace_id, fanout.ids["search.fanout"], "search",
                     fanout.start + 1 * MS, "INFO", "fan-out to 3 shards"),
        log_document(fanout.trace_id, fanout.ids["cache.get"], "cache", fanout.start + 61 * MS,
                     "DEBUG", "cache miss", {"cache.key": "q:shoes"}),
        log_document(fanout.trace_id, fanout.ids["shard2"], "index", fanout.start + 88 * MS,
                     "WARN", "shard 2 answered slowly", {"shard": 2, "took.ms": 85}),
    ]  # fmt: skip


LOG_LINKS = [{"name": "Logs", "url": "https://logs.example/?trace={trace_id}"}]


def drop_store(client: OpenSearch, settings: Settings) -> None:
    prefix = settings.store_index_prefix
    assert prefix.startswith("uitest-"), "never drop the shared store"
    client.indices.delete(index=f"{prefix}*", ignore_unavailable=True)
    client.indices.delete_index_template(name=f"{prefix}*", ignore=404)
    if has_ism(node_plugins(client)):
        policy = ism_policy_id(store_names(settings).span_alias)
        client.transport.perform_request(
            "DELETE", f"{ISM_POLICIES}/{policy}", params={"ignore": 404}
        )


@pytest.fixture(scope="module")
def store(stack: Settings, opensearch: OpenSearch, tmp_path_factory) -> Iterator[Settings]:
    settings = stack.model_copy(
        update={
            "store_index_prefix": f"uitest-{uuid.uuid4().hex[:8]}-",
            "state_dir": tmp_path_factory.mktemp("ui"),
            "query_port": free_port(),
        }
    )
    try:
        ensure_store(opensearch, settings)
        docs = [
            Doc(doc_id, routing, source)
            for trace in TRACES.values()
            for doc_id, routing, source in encoded_documents(trace.data)
        ]
        alias = store_names(settings).span_alias
        answer = opensearch.bulk(body=bulk_body(docs), index=alias, refresh="true")
        assert not answer["errors"], answer
        index_documents(opensearch, settings, red_documents(operations(), window_starts()))
        index_logs(opensearch, logs_index(settings), log_records())
        yield settings
    finally:
        drop_store(opensearch, settings)


def logs_index(settings: Settings) -> str:
    return f"{settings.store_index_prefix}logs"


@pytest.fixture(scope="module")
def base(store: Settings) -> Iterator[str]:
    """A `spansieve query` process over the private store, its log records and a log link
    template; its URL."""
    settings = Settings.model_validate(
        {**store.model_dump(), "query_logs_index": logs_index(store), "query_log_links": LOG_LINKS}
    )
    child = start_component("query", settings)
    url = f"http://127.0.0.1:{store.query_port}"
    try:
        ready = wait_until(lambda: httpx.get(f"{url}/healthz").status_code == 200, "query", 60)
        assert ready, f"query server did not start; see {store.state_dir}/logs/query.log"
        yield url
    finally:
        stop_components([child])


@pytest.fixture
def page(chromium: WebDriver, base: str) -> Iterator[WebDriver]:
    """The browser; after the test, its console must hold no script error (failed API
    requests, which the tests provoke, are logged by Chromium as resource errors)."""
    chromium.get_log("browser")  # drop what earlier tests left
    yield chromium
    problems = [
        entry["message"]
        for entry in chromium.get_log("browser")
        if entry["level"] == "SEVERE" and "Failed to load resource" not in entry["message"]
    ]
    assert not problems, problems


# --- reading the page ------------------------------------------------------------------


def until(driver: WebDriver, check, what: str) -> Any:
    """Wait for check(driver) to return something truthy; fail saying what was awaited.
    An element replaced by the page while check read it counts as "not yet"."""
    wait = WebDriverWait(
        driver, WAIT, poll_frequency=0.05, ignored_exceptions=[StaleElementReferenceException]
    )
    return wait.until(check, f"waiting for {what}")


RESULTS_JS = """
const section = document.getElementById('results');
if (section.getAttribute('aria-busy') !== 'false' || section.dataset.search !== location.search)
  return null;  // a search is running, or the shown results are not the URL's search
return [...document.querySelectorAll('#results-body tr.result')].map(row => ({
  id: row.dataset.traceId,
  name: row.querySelector('.root-name').textContent,
  spans: Number(row.querySelector('.result-spans').textContent),
  errors: Number(row.querySelector('.result-errors').textContent),
  duration: row.querySelector('.dur-text').textContent,
  services: Object.fromEntries([...row.querySelectorAll('.chip')].map(
    chip => [chip.querySelector('.chip-name').textContent,
             Number(chip.querySelector('.chip-count').textContent)])),
}));
"""

TIMELINE_JS = """
if (document.getElementById('trace-view').getAttribute('aria-busy') !== 'false') return null;
return [...document.querySelectorAll('#timeline .tl-row')].map(row => {
  const bar = row.querySelector('.tl-bar').getBoundingClientRect();
  const lane = row.querySelector('.tl-lane').getBoundingClientRect();
  return {
    span: row.dataset.spanId,
    label: row.querySelector('.tl-span').textContent.replace(/\\s+/g, ' ').trim(),
    depth: Number(row.querySelector('.tl-name').style.getPropertyValue('--depth')),
    hidden: row.hidden,
    error: row.classList.contains('tl-error'),
    left: bar.left - lane.left, width: bar.width, lane: lane.width,
  };
});
"""


def results(driver: WebDriver, expected: list[str]) -> list[dict[str, Any]]:
    """The result rows of the URL's search, once their root names are ``expected``."""

    def check(d: WebDriver) -> Any:
        rows = d.execute_script(RESULTS_JS)
        return rows if rows is not None and names(rows) == expected else None

    try:
        return until(driver, check, f"results {expected}")
    except TimeoutException:
        shown = names(driver.execute_script(RESULTS_JS) or [])
        raise AssertionError(f"results: expected {expected}, shown {shown}") from None


def names(rows: list[dict[str, Any]]) -> list[str]:
    return [row["name"] for row in rows]


def back(driver: WebDriver) -> None:
    """The browser's back button; returns once the URL changed (popstate may follow)."""
    before = driver.current_url
    driver.back()
    until(driver, lambda d: d.current_url != before, "the URL to change")


def timeline(driver: WebDriver, count: int) -> list[dict[str, Any]]:
    def check(d: WebDriver) -> Any:
        rows = d.execute_script(TIMELINE_JS)
        return rows if rows is not None and len(rows) == count else None

    return until(driver, check, f"{count} timeline rows")


def visible(rows: list[dict[str, Any]]) -> list[str]:
    return [row["label"] for row in rows if not row["hidden"]]


def message(driver: WebDriver, expected: str) -> str:
    """The message area's text, once it is shown and contains ``expected``."""

    def check(d: WebDriver) -> Any:
        box = d.find_element(By.ID, "message")
        text = box.find_element(By.ID, "message-text").text if box.is_displayed() else ""
        return text if expected in text else None

    return until(driver, check, f"a message with {expected!r}")


def detail_facts(driver: WebDriver) -> dict[str, str]:
    return driver.execute_script(
        "return Object.fromEntries([...document.querySelectorAll('#span-detail .facts dt')]"
        ".map(dt => [dt.textContent, dt.nextElementSibling.textContent]))"
    )


def query_of(driver: WebDriver) -> tuple[str, dict[str, list[str]]]:
    parts = urlsplit(driver.current_url)
    return parts.path, parse_qs(parts.query)


def options(driver: WebDriver, select_id: str) -> list[str]:
    """The values of a select's options, read in one script call: the page refills the
    list while it loads, and element handles read one by one can go stale in between."""
    return driver.execute_script(
        "return [...document.getElementById(arguments[0]).options].map(o => o.value)", select_id
    )


def submit(driver: WebDriver, **fields: str) -> None:
    """Fill text fields of the search form (by id) and press "Find traces"."""
    for field, value in fields.items():
        box = driver.find_element(By.ID, field)
        box.clear()
        if value:
            box.send_keys(value)
    driver.find_element(By.CSS_SELECTOR, "#search button[type=submit]").click()


FRONTEND = ["frontend: GET /search", "frontend: POST /checkout", "frontend: GET /cart"]


# --- tests -----------------------------------------------------------------------------


def test_search_by_service(page: WebDriver, base: str):
    page.get(f"{base}/")
    until(page, lambda d: "frontend" in options(d, "service"), "the services")
    assert options(page, "service") == [
        "",
        "bulk",
        "cache",
        "cart",
        "frontend",
        "index",
        "payment",
        "search",
    ]
    assert page.switch_to.active_element.get_attribute("id") == "service"  # focus on search

    Select(page.find_element(By.ID, "service")).select_by_value("payment")
    until(page, lambda d: "charge" in options(d, "operation"), "payment's operations")
    assert options(page, "operation") == ["", "card.authorize", "charge"]
    Select(page.find_element(By.ID, "service")).select_by_value("frontend")
    until(page, lambda d: "POST /checkout" in options(d, "operation"), "frontend's operations")
    submit(page)

    rows = results(page, FRONTEND)  # newest first
    by_name = {row["name"]: row for row in rows}
    checkout = by_name["frontend: POST /checkout"]
    assert (checkout["spans"], checkout["errors"], checkout["duration"]) == (6, 1, "400ms")
    assert checkout["services"] == {"payment": 3, "cart": 2, "frontend": 1}
    assert checkout["id"] == TRACES["checkout"].hex
    assert [row["errors"] for row in rows] == [0, 1, 0]
    assert [row["spans"] for row in rows] == [2, 6, 3]
    path, params = query_of(page)
    assert path == "/search"
    assert params == {"service": ["frontend"], "lookback": ["1h"], "limit": ["20"]}

    Select(page.find_element(By.ID, "operation")).select_by_value("POST /checkout")
    submit(page)
    results(page, ["frontend: POST /checkout"])
    assert query_of(page)[1]["operation"] == ["POST /checkout"]


def test_filters_and_back_button(page: WebDriver, base: str):
    page.get(f"{base}/search?service=frontend")
    results(page, FRONTEND)
    until(page, lambda d: d.find_element(By.ID, "service").get_attribute("value"), "the form")
    assert page.find_element(By.ID, "service").get_attribute("value") == "frontend"

    submit(page, tags="http.response.status_code=200")
    results(page, ["frontend: GET /cart"])
    assert query_of(page)[1]["tag"] == ["http.response.status_code:200"]

    submit(page, tags="", minDuration="200ms")
    results(page, ["frontend: POST /checkout"])
    submit(page, minDuration="100ms", maxDuration="200ms")
    results(page, ["frontend: GET /search"])
    submit(page, minDuration="", maxDuration="", tags='http.response.status_code="201"')
    results(page, ["frontend: GET /search"])
    assert query_of(page)[1]["tag"] == ["http.response.status_code:201"]

    def field(name: str) -> str:
        return page.find_element(By.ID, name).get_attribute("value")

    back(page)
    results(page, ["frontend: GET /search"])
    assert (field("minDuration"), field("maxDuration"), field("tags")) == ("100ms", "200ms", "")
    back(page)
    results(page, ["frontend: POST /checkout"])
    back(page)
    results(page, ["frontend: GET /cart"])
    assert field("tags") == "http.response.status_code=200"
    back(page)
    results(page, FRONTEND)
    assert (field("tags"), field("minDuration")) == ("", "")


def test_trace_timeline(page: WebDriver, base: str):
    page.get(f"{base}/search?service=frontend")
    results(page, FRONTEND)
    page.find_element(By.LINK_TEXT, "frontend: POST /checkout").click()

    rows = timeline(page, 6)
    assert query_of(page)[0] == f"/trace/{TRACES['checkout'].hex}"
    assert page.find_element(By.ID, "trace-title").text == "frontend: POST /checkout"
    facts = page.execute_script(
        "return Object.fromEntries([...document.querySelectorAll('#trace-facts dd[data-fact]')]"
        ".map(dd => [dd.dataset.fact, dd.textContent]))"
    )
    assert {k: v for k, v in facts.items() if k != "start"} == {
        "duration": "400ms",
        "services": "3",
        "depth": "3",
        "spans": "6",
        "errors": "1",
    }
    # Depth-first in start order, indented by depth; the failed span is marked.
    assert [(row["label"], row["depth"]) for row in rows] == [
        ("frontend POST /checkout", 0),
        ("cart cart.get", 1),
        ("cart SELECT cart", 2),
        ("payment charge ! error", 1),
        ("payment card.authorize", 2),
        ("payment card.authorize", 2),
    ]
    assert [row["error"] for row in rows] == [False, False, False, True, False, False]
    # Bars: the root spans the whole lane; children sit inside their parents, later
    # siblings further right, widths in proportion to durations (400 : 360 : 200 ms).
    root, cart_get, select, charge, auth1, auth2 = rows
    assert root["left"] == pytest.approx(0, abs=1)
    assert root["width"] == pytest.approx(root["lane"], abs=1)
    assert all(row["width"] <= root["width"] for row in rows)
    for parent, child in [(root, cart_get), (cart_get, select), (root, charge), (charge, auth1)]:
        assert child["left"] >= parent["left"] - 0.5
        assert child["left"] + child["width"] <= parent["left"] + parent["width"] + 0.5
    assert cart_get["left"] < charge["left"] and auth1["left"] < auth2["left"]
    assert charge["width"] / root["width"] == pytest.approx(360 / 400, abs=0.01)
    assert auth2["width"] / root["width"] == pytest.approx(200 / 400, abs=0.01)

    # A span's details: tags, process tags, the log with its offset, the parent reference.
    charge_row = page.find_element(By.CSS_SELECTOR, f'.tl-row[data-span-id="{charge["span"]}"]')
    charge_row.find_element(By.CSS_SELECTOR, ".tl-span").click()
    until(page, lambda d: detail_facts(d).get("Operation") == "charge", "the span's details")
    facts = detail_facts(page)
    assert (facts["Service"], facts["Duration"], facts["Start offset"]) == (
        "payment",
        "360ms",
        "+30ms",
    )
    tags = page.execute_script(
        "return [...document.querySelectorAll('#span-detail tr[data-key]')]"
        ".map(tr => [tr.dataset.key, tr.querySelector('.kv-value').textContent])"
    )
    assert ["error", "true"] in tags
    assert ["otel.status_description", "card declined"] in tags
    assert ["payment.amount", "12.5"] in tags
    assert ["deployment.environment", "prod"] in tags  # process tag
    assert ["event", "retry"] in tags  # log field
    assert page.find_element(By.CSS_SELECTOR, "#span-detail .log-offset").text == "+140ms"
    references = page.find_element(By.CSS_SELECTOR, "#span-detail .refs").text
    assert references.startswith("CHILD_OF frontend: POST /checkout")
    assert query_of(page)[1] == {"span": [charge["span"]]}

    # Collapse the failed span's subtree, then the root's, then expand everything.
    charge_row.find_element(By.CSS_SELECTOR, ".tl-toggle").click()
    assert visible(timeline(page, 6)) == [row["label"] for row in rows[:4]]
    toggle = charge_row.find_element(By.CSS_SELECTOR, ".tl-toggle")
    assert toggle.get_attribute("aria-expanded") == "false"
    page.find_element(By.CSS_SELECTOR, ".tl-row .tl-toggle").click()  # the root's
    assert visible(timeline(page, 6)) == ["frontend POST /checkout"]
    page.find_element(By.CSS_SELECTOR, ".tl-row .tl-toggle").click()
    assert len(visible(timeline(page, 6))) == 4  # charge stays collapsed
    page.find_element(By.ID, "expand-all").click()
    assert len(visible(timeline(page, 6))) == 6

    # Keyboard: the arrow keys move between spans.
    page.find_element(By.CSS_SELECTOR, ".tl-row .tl-span").send_keys(Keys.ARROW_DOWN)
    assert page.switch_to.active_element.text.startswith("cart")

    page.find_element(By.ID, "back").click()
    results(page, FRONTEND)


def test_large_trace(page: WebDriver, base: str):
    big = SPAN_COUNTS["big"]
    page.get(f"{base}/trace/{TRACES['big'].hex}")
    rows = timeline(page, big)
    # The page marks its rendering time (speed is the bench's business, not a test's).
    render = page.execute_script(
        "return performance.getEntriesByName('spansieve:timeline').map(m => m.duration)"
    )
    assert len(render) == 1, render
    assert rows[0]["label"] == "bulk batch.run"
    assert rows[0]["width"] == pytest.approx(rows[0]["lane"], abs=1)
    assert [row["depth"] for row in rows[:3]] == [0, 1, 2]
    page.find_element(By.ID, "collapse-all").click()
    assert visible(timeline(page, big)) == ["bulk batch.run"]
    page.find_element(By.CSS_SELECTOR, ".tl-row .tl-toggle").click()
    assert len(visible(timeline(page, big))) == 41  # the root and its chunks
    page.find_element(By.ID, "expand-all").click()
    assert len(visible(timeline(page, big))) == big


def test_errors_are_shown(page: WebDriver, base: str):
    page.get(f"{base}/search?service=frontend&minDuration=abc")
    message(page, "HTTP 400: minDuration")
    assert page.find_element(By.ID, "results-title").text == "Search failed"
    assert page.find_element(By.ID, "minDuration").get_attribute("value") == "abc"

    submit(page, minDuration="", tags="novalue")
    message(page, 'tags: expected key=value at "novalue"')
    assert page.switch_to.active_element.get_attribute("id") == "tags"

    lookup = page.find_element(By.ID, "lookup-id")
    lookup.send_keys("ffff" + Keys.ENTER)
    message(page, "HTTP 404: trace not found")
    until(page, lambda d: d.find_element(By.ID, "trace-title").text == "Trace not loaded", "title")
    lookup.clear()
    lookup.send_keys("not-hex" + Keys.ENTER)
    message(page, "HTTP 400")

    # An upper-case id opens the trace, and the URL shows its canonical form.
    lookup.clear()
    lookup.send_keys(TRACES["cart"].hex.upper() + Keys.ENTER)
    timeline(page, SPAN_COUNTS["cart"])
    assert not page.find_element(By.ID, "message").is_displayed()
    assert query_of(page)[0] == f"/trace/{TRACES['cart'].hex}"


def test_format_helpers(page: WebDriver, base: str):
    """The UI's own parsing and formatting, run in the browser as the page runs them."""
    page.get(f"{base}/")
    answer = page.execute_async_script(
        """
        const done = arguments[arguments.length - 1];
        import('/static/format.js').then(f => {
          const attempt = text => {
            try { return f.parseTags(text); } catch (e) { return e.message; }
          };
          done({
            tags: attempt('a=1  b="x y" c=  d="q\\\\"uote" url=http://h:1/p?x=y'),
            bad: [attempt('novalue'), attempt('k="open'), attempt('a:b=1'), attempt('k="v"x')],
            text: f.tagsText([['a', '1'], ['b', 'x y'], ['c', ''], ['d', 'q"uote']]),
            durations: [0, 999, 999.7, 1500, 12345, 999499, 999999, 1.5e6, 59.97e6, 61e6, 5400e6]
              .map(f.formatDuration),
            split: f.splitTagParam('http.url:http://h:1/p'),
          });
        });
        """
    )
    assert answer["tags"] == [
        ["a", "1"],
        ["b", "x y"],
        ["c", ""],
        ["d", 'q"uote'],
        ["url", "http://h:1/p?x=y"],
    ]
    assert answer["bad"] == [
        'tags: expected key=value at "novalue"',
        'tags: unterminated quote in the value of "k"',
        "tags: a key cannot contain ':' (\"a:b\")",
        'tags: expected a space after the quoted value of "k"',
    ]
    assert answer["text"] == 'a=1 b="x y" c="" d="q\\"uote"'
    assert answer["durations"] == [
        "0µs",
        "999µs",
        "1ms",
        "1.5ms",
        "12.3ms",
        "999ms",
        "1s",
        "1.5s",
        "1m",
        "1m1s",
        "1h30m",
    ]
    assert answer["split"] == ["http.url", "http://h:1/p"]


def test_opensearch_down_is_shown(page: WebDriver, store: Settings):
    """A query server whose OpenSearch does not answer: the page says so (HTTP 503)."""
    settings = store.model_copy(
        update={"opensearch_url": f"http://127.0.0.1:{free_port()}", "query_port": free_port()}
    )
    child = start_component("query", settings)
    url = f"http://127.0.0.1:{settings.query_port}"
    try:
        up = wait_until(lambda: httpx.get(f"{url}/healthz").status_code == 503, "query", 60)
        assert up, f"query server did not start; see {settings.state_dir}/logs/query.log"
        page.get(f"{url}/search?service=frontend")
        message(page, "HTTP 503: OpenSearch unreachable")
        assert page.find_element(By.ID, "results-title").text == "Search failed"
    finally:
        stop_components([child])


# --- services page, service map, critical path, log records ----------------------------

SCREENSHOTS = os.environ.get("SPANSIEVE_SCREENSHOTS")
NO_VALUE = "\N{EN DASH}"  # what the services page shows for a figure it has no data for


def screenshot(driver: WebDriver, name: str, height: int | None = None) -> None:
    """Save the page as ``<SPANSIEVE_SCREENSHOTS>/<name>`` when that is set, its viewport
    ``height`` pixels high for the shot."""
    if not SCREENSHOTS:
        return
    folder = Path(SCREENSHOTS)
    folder.mkdir(parents=True, exist_ok=True)
    size = driver.get_window_size()
    if height:
        frame = driver.execute_script("return window.outerHeight - window.innerHeight")
        driver.set_window_size(size["width"], height + frame)
    try:
        driver.execute_script("window.scrollTo(0, 0); document.activeElement?.blur()")
        driver.save_screenshot(str(folder / name))
    finally:
        driver.set_window_size(size["width"], size["height"])


SERVICES_JS = """
const view = document.getElementById('services-view');
if (!view || view.hidden || view.getAttribute('aria-busy') !== 'false') return null;
const notice = document.getElementById('services-notice');
return {
  title: document.getElementById('services-title').textContent,
  status: document.getElementById('services-status').textContent,
  notice: notice.hidden ? null : notice.textContent,
  traces: document.getElementById('services-traces').hidden ? null
    : document.getElementById('services-traces').getAttribute('href'),
  rows: [...document.querySelectorAll('#services-body tr')].map(tr => ({
    name: tr.dataset.name,
    values: Object.fromEntries([...tr.querySelectorAll('td.fig')].map(
      td => [td.dataset.figure, td.querySelector('.fig-value').textContent])),
    sparks: tr.querySelectorAll('svg.spark-svg path.spark-line').length,
    focused: tr.classList.contains('is-focused'),
    traces: tr.querySelector('.traces-link').getAttribute('href'),
  })),
};
"""


def services_page(driver: WebDriver, title: str, first: str | None = None) -> dict[str, Any]:
    """The services page's state once it shows ``title`` (and ``first`` as its first row)."""

    def check(d: WebDriver) -> Any:
        state = d.execute_script(SERVICES_JS)
        if not state or state["title"] != title:
            return None
        if first is not None and (not state["rows"] or state["rows"][0]["name"] != first):
            return None
        return state

    try:
        return until(driver, check, f"the services page {title!r}")
    except TimeoutException:
        shown = driver.execute_script(SERVICES_JS)
        raise AssertionError(f"services page: {shown}; message: {shown_message(driver)}") from None


def shown_message(driver: WebDriver) -> str:
    """The message area's text ("" when hidden), to say why a page did not load."""
    return driver.execute_script(
        "const box = document.getElementById('message');"
        "return box && !box.hidden ? box.textContent.trim() : ''"
    )


def rows_by_name(state: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {row["name"]: row for row in state["rows"]}


def test_services_page(page: WebDriver, base: str):
    page.get(f"{base}/services?lookback=1h")
    state = services_page(page, "Services", first="cart")
    assert page.find_element(By.ID, "nav-services").get_attribute("aria-current") == "page"
    # Busiest first (requests per second over the hour), no metrics last.
    names = [row["name"] for row in state["rows"]]
    assert names == ["cart", "frontend", "index", "payment", "search", "cache", "bulk"]
    assert state["notice"] is None
    assert state["status"].startswith("7 services, 6 with span metrics")
    rows = rows_by_name(state)
    # 50 one-minute windows in the hour: frontend 6 calls each, cart 8, payment 3 (every
    # fifth window one failed charge).
    assert rows["frontend"]["values"]["calls"] == "0.08/s"
    assert rows["cart"]["values"]["calls"] == "0.11/s"
    assert rows["payment"]["values"]["calls"] == "0.04/s"
    assert rows["payment"]["values"]["errors"] == "6.67%"
    assert rows["frontend"]["values"]["errors"] == "0%"
    for name in names[:-1]:
        assert rows[name]["sparks"] == 5, name
        for quantile in ("p50", "p95", "p99"):
            assert rows[name]["values"][quantile].endswith("ms"), (name, rows[name]["values"])
    assert rows["bulk"]["sparks"] == 0
    assert set(rows["bulk"]["values"].values()) == {NO_VALUE}
    assert rows["payment"]["traces"] == "/search?service=payment&lookback=1h"
    screenshot(page, "services.png", height=540)

    # Hovering a sparkline reads out the nearest point.
    hover = page.find_element(
        By.CSS_SELECTOR, '#services-body tr[data-name="cart"] td[data-figure="calls"] .spark-hover'
    )
    ActionChains(page).move_to_element(hover).perform()
    tip = page.find_element(By.CSS_SELECTOR, '#services-body tr[data-name="cart"] .spark-tip')
    until(page, lambda d: tip.is_displayed(), "the sparkline's readout")
    assert " at " in tip.text and tip.text.endswith(tuple("0123456789"))

    # Sorting: by errors (highest first), then by name.
    page.find_element(By.CSS_SELECTOR, '#services-head button[data-sort="errors"]').click()
    assert services_page(page, "Services")["rows"][0]["name"] == "payment"
    page.find_element(By.CSS_SELECTOR, '#services-head button[data-sort="name"]').click()
    state = services_page(page, "Services", first="bulk")
    assert [row["name"] for row in state["rows"]] == sorted(names)

    # A service's operations, and from there its traces.
    page.find_element(By.LINK_TEXT, "frontend").click()
    state = services_page(page, "frontend: operations")
    assert query_of(page) == ("/services", {"lookback": ["1h"], "service": ["frontend"]})
    assert [row["name"] for row in state["rows"]] == ["GET /cart", "GET /search", "POST /checkout"]
    assert rows_by_name(state)["GET /cart"]["values"]["calls"] == "0.04/s"
    assert state["traces"] == "/search?service=frontend&lookback=1h"
    checkout = rows_by_name(state)["POST /checkout"]
    assert checkout["traces"] == "/search?service=frontend&operation=POST+%2Fcheckout&lookback=1h"
    page.find_element(By.LINK_TEXT, "← All services").click()
    state = services_page(page, "Services")
    assert rows_by_name(state)["frontend"]["focused"]
    back(page)
    services_page(page, "frontend: operations")
    page.find_element(
        By.CSS_SELECTOR, '#services-body tr[data-name="POST /checkout"] .traces-link'
    ).click()
    results(page, ["frontend: POST /checkout"])


def test_services_page_without_span_metrics(page: WebDriver, base: str):
    """No span of that kind was counted: the page says so instead of an empty table."""
    page.get(f"{base}/services?lookback=1h&kind=client")
    state = services_page(page, "Services")
    assert state["notice"].startswith("No span metrics for these services in this window.")
    assert "span-metrics feature may be off" in state["notice"]
    assert all(set(row["values"].values()) == {NO_VALUE} for row in state["rows"])
    assert page.find_element(By.ID, "services-kind").get_attribute("value") == "client"


MAP_JS = """
const view = document.getElementById('map-view');
if (!view || view.hidden || view.getAttribute('aria-busy') !== 'false') return null;
return {
  status: document.getElementById('map-status').textContent,
  legend: !document.getElementById('map-legend').hidden,
  nodes: Object.fromEntries([...document.querySelectorAll('#map .map-node')].map(a => {
    const dot = a.querySelector('.map-dot');
    return [a.dataset.service, {
      x: Number(dot.getAttribute('cx')), y: Number(dot.getAttribute('cy')),
      ring: a.querySelector('.map-ring').getAttribute('class'),
      href: a.getAttribute('href'),
    }];
  })),
  edges: [...document.querySelectorAll('#map .map-edge')].map(
    g => [g.dataset.from, g.dataset.to, Number(g.dataset.calls)]),
  counts: [...document.querySelectorAll('#map .map-count')].map(t => t.textContent),
};
"""


def test_service_map(page: WebDriver, base: str):
    page.get(f"{base}/map?lookback=1h")
    state = until(page, lambda d: d.execute_script(MAP_JS), "the service map")
    assert state["edges"], (state["status"], shown_message(page))
    assert state["status"].startswith("7 services, 8 call paths")
    assert sorted(state["edges"]) == [
        ["bulk", "bulk", 1_200],
        ["cart", "cart", 2],
        ["frontend", "cart", 2],
        ["frontend", "payment", 1],
        ["frontend", "search", 1],
        ["index", "cache", 1],
        ["payment", "payment", 2],
        ["search", "index", 3],
    ]
    assert "1.2k" in state["counts"]
    nodes = state["nodes"]
    # Layers from callers to callees, left to right.
    assert nodes["frontend"]["x"] == nodes["bulk"]["x"]
    assert nodes["frontend"]["x"] < nodes["cart"]["x"]
    assert nodes["cart"]["x"] == nodes["payment"]["x"] == nodes["search"]["x"]
    assert nodes["search"]["x"] < nodes["index"]["x"] < nodes["cache"]["x"]
    # Rings by error share: payment failed 6.67 % of its calls; bulk has no span metrics.
    assert "map-ring-bad" in nodes["payment"]["ring"]
    assert "map-ring-ok" in nodes["frontend"]["ring"]
    assert nodes["bulk"]["ring"] == "map-ring"
    assert state["legend"]
    screenshot(page, "service-map.png", height=560)

    page.find_element(By.CSS_SELECTOR, '#map .map-node[data-service="payment"]').click()
    state = services_page(page, "Services")
    assert query_of(page) == ("/services", {"lookback": ["1h"], "focus": ["payment"]})
    assert rows_by_name(state)["payment"]["focused"]
    assert page.switch_to.active_element.text == "payment"


CRITICAL_JS = """
return [...document.querySelectorAll('#timeline .tl-row')].map(row => {
  const lane = row.querySelector('.tl-lane').getBoundingClientRect();
  return {
    label: row.querySelector('.tl-span').textContent.replace(/\\s+/g, ' ').trim(),
    critical: row.classList.contains('tl-critical'),
    marks: [...row.querySelectorAll('.tl-crit')].map(m => {
      const box = m.getBoundingClientRect();
      return box.width ? [100 * (box.left - lane.left) / lane.width,
                          100 * (box.right - lane.left) / lane.width] : null;
    }),
  };
});
"""


def test_critical_path(page: WebDriver, base: str):
    fanout = TRACES["fanout"]
    page.get(f"{base}/trace/{fanout.hex}")
    timeline(page, SPAN_COUNTS["fanout"])
    rows = page.execute_script(CRITICAL_JS)
    assert [(row["label"], row["critical"]) for row in rows] == [
        ("search search.fanout", True),
        ("index shard.query", False),  # shard 1: done long before the end
        ("index shard.query", True),  # shard 2: finished last
        ("cache cache.get", True),
        ("index shard.query", False),  # shard 3: overlaps shard 2
    ]
    expected = [
        [[0, 5], [90, 100]],
        [],
        [[5, 60], [85, 90]],
        [[60, 85]],
        [],
    ]
    for row, marks in zip(rows, expected, strict=True):
        assert len(row["marks"]) == len(marks), row
        for got, want in zip(row["marks"], marks, strict=True):
            assert got == pytest.approx(want, abs=1), row
    legend = page.find_element(By.CSS_SELECTOR, ".trace-tools .legend").text
    assert "waited on" in legend

    toggle = page.find_element(By.ID, "critical-toggle")
    assert toggle.is_selected()
    toggle.click()
    assert all(mark is None for row in page.execute_script(CRITICAL_JS) for mark in row["marks"])
    toggle.click()
    assert page.execute_script(CRITICAL_JS)[0]["marks"][0] is not None

    # The README's trace: shard 2 selected, its operation's metrics and its log records.
    shard2 = fanout.ids["shard2"].hex()
    page.find_element(By.CSS_SELECTOR, f'.tl-row[data-span-id="{shard2}"] .tl-span').click()
    until(page, lambda d: d.find_elements(By.CSS_SELECTOR, "#span-detail .spark-line"), "metrics")
    until(page, lambda d: d.find_element(By.ID, "trace-logs").is_displayed(), "the log records")
    screenshot(page, "trace.png", height=820)


LOGS_JS = """
const section = document.getElementById('trace-logs');
if (section.hidden) return null;
const records = list => [...list.querySelectorAll('.log-record')].map(li => ({
  span: li.dataset.spanId,
  time: li.querySelector('.log-time').textContent,
  severity: li.querySelector('.log-sev').textContent,
  body: li.querySelector('.log-body').textContent,
  button: li.querySelector('button.log-span')?.textContent ?? null,
}));
const slot = document.querySelector('#span-detail [data-part="log-records"]');
return {
  title: document.getElementById('trace-logs-title').textContent,
  records: records(section),
  links: [...document.querySelectorAll('#trace-links a')].map(a => [a.textContent, a.href]),
  span: slot && !slot.hidden ? {
    heading: slot.querySelector('h4').textContent,
    records: records(slot),
    links: [...document.querySelectorAll('#span-detail [data-part="links"] a')].map(
      a => [a.textContent, a.href]),
  } : null,
};
"""


def test_trace_logs_links_and_span_metrics(page: WebDriver, base: str):
    checkout = TRACES["checkout"]
    root, charge = checkout.ids["POST /checkout"].hex(), checkout.ids["charge"].hex()
    page.get(f"{base}/trace/{checkout.hex}")
    timeline(page, SPAN_COUNTS["checkout"])
    logs = until(page, lambda d: d.execute_script(LOGS_JS), "the trace's log records")
    link = f"https://logs.example/?trace={checkout.hex}"
    assert logs["links"] == [["Logs", link]]
    assert logs["title"] == "Logs (4)"  # the cart trace's record is not among them
    shown = [(r["time"], r["severity"], r["body"], r["span"], r["button"]) for r in logs["records"]]
    assert shown == [
        ("+1ms", "INFO", "checkout started", root, "POST /checkout"),
        ("+140ms", "WARN", "card authorization timed out, retrying", charge, "charge"),
        ("+389ms", "ERROR", "card declined", charge, "charge"),
        ("+400ms", "INFO", "order audit written", "", None),
    ]
    # A record's span opens in the timeline, and its details list the span's own records.
    page.find_element(
        By.XPATH, "//li[contains(@class,'log-record')][.//div[.='card declined']]//button"
    ).click()
    until(page, lambda d: detail_facts(d).get("Operation") == "charge", "the span's details")
    selected = page.find_element(By.CSS_SELECTOR, ".tl-row.tl-selected")
    assert selected.get_attribute("data-span-id") == charge
    assert query_of(page)[1] == {"span": [charge]}
    span_logs = until(page, lambda d: d.execute_script(LOGS_JS)["span"], "the span's records")
    assert span_logs["heading"] == "Log records (2)"
    assert [r["body"] for r in span_logs["records"]] == [
        "card authorization timed out, retrying",
        "card declined",
    ]
    assert span_logs["links"] == [["Logs", link]]

    # The operation's metrics around the span: three lines, each marking the span's start.
    def metrics(d: WebDriver) -> Any:
        found = d.execute_script(
            "return [...document.querySelectorAll('#span-detail .span-metric')].map(m => ["
            " m.dataset.figure, m.querySelector('.span-metric-value').textContent,"
            " m.querySelectorAll('.spark-line').length,"
            " m.querySelectorAll('.spark-marker').length])"
        )
        return found if len(found) == 3 else None

    figures = until(page, metrics, "the operation's metrics")
    assert [f[0] for f in figures] == ["calls", "errors", "p95"]
    assert all(lines == 1 and marker == 1 for _, _, lines, marker in figures), figures
    assert figures[0][1] == "0.02/s"  # one charge a minute


def test_search_conditions(page: WebDriver, base: str):
    """The Conditions field is the API's ``where``: kept in the URL, its errors under it."""
    page.get(f"{base}/search?service=frontend")
    results(page, FRONTEND)
    submit(page, where="(http.response.status_code=200 OR http.response.status_code>=201)")
    results(page, ["frontend: GET /search", "frontend: GET /cart"])
    assert query_of(page)[1]["where"] == [
        "(http.response.status_code=200 OR http.response.status_code>=201)"
    ]
    submit(page, where="trace.duration>300ms")
    results(page, ["frontend: POST /checkout"])

    submit(page, where="http.route=~")
    error = page.find_element(By.ID, "where-error")
    until(page, lambda d: error.is_displayed(), "the condition's error under its field")
    assert error.text.startswith("where: at ")
    assert page.find_element(By.ID, "where").get_attribute("aria-invalid") == "true"
    assert not page.find_element(By.ID, "message").is_displayed()
    assert page.find_element(By.ID, "results-title").text == "Search failed"

    back(page)
    results(page, ["frontend: POST /checkout"])
    assert page.find_element(By.ID, "where").get_attribute("value") == "trace.duration>300ms"
    assert not page.find_element(By.ID, "where-error").is_displayed()


SIGNIN_JS = """
const panel = document.getElementById('signin');
return panel.hidden ? null : document.getElementById('signin-reason').textContent;
"""


def test_sign_in_with_a_bearer_token(page: WebDriver, store: Settings, tmp_path: Path):
    """A query server with RBAC: no token is a 401 and the sign-in panel; a token with too
    few rights gets the server's 403 message; a good token shows the data."""
    roles = tmp_path / "roles.yaml"
    roles.write_text(
        "roles:\n"
        "  sre: {services: ['*'], actions: ['*']}\n"
        "  payments: {services: [payment], actions: [search, read_trace]}\n"
    )
    tokens = tmp_path / "tokens"
    tokens.write_text("tok-sre sre-user sre\ntok-pay pay-user payments\n")
    settings = store.model_copy(
        update={"query_roles": roles, "query_tokens_file": tokens, "query_port": free_port()}
    )
    child = start_component("query", settings)
    url = f"http://127.0.0.1:{settings.query_port}"
    try:
        up = wait_until(lambda: httpx.get(f"{url}/healthz").status_code == 200, "query", 60)
        assert up, f"query server did not start; see {settings.state_dir}/logs/query.log"
        page.get(f"{url}/search?service=frontend")
        reason = until(page, lambda d: d.execute_script(SIGNIN_JS), "the sign-in panel")
        assert reason.startswith("The query server asks for an access token")
        assert not page.find_element(By.ID, "message").is_displayed()  # no 401 message

        # A token that may not read frontend: the server's 403 message is shown.
        page.find_element(By.ID, "signin-token").send_keys("tok-pay" + Keys.ENTER)
        message(page, "HTTP 403")
        assert page.execute_script(SIGNIN_JS) is None
        assert page.find_element(By.ID, "signout").is_displayed()
        stored = page.execute_script("return sessionStorage.getItem('spansieve.token')")
        assert stored == "tok-pay"

        # Signing out asks again; a token with every right shows the search.
        page.find_element(By.ID, "signout").click()
        until(page, lambda d: d.execute_script(SIGNIN_JS), "the sign-in panel again")
        page.find_element(By.ID, "signin-token").send_keys("tok-sre" + Keys.ENTER)
        results(page, FRONTEND)
        assert page.execute_script(SIGNIN_JS) is None
    finally:
        page.execute_script("sessionStorage.clear()")
        stop_components([child])
