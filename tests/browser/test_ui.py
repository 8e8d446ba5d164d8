"""The web UI of `spansieve query` in headless Chromium, over a private store.

Four traces (one of 1 201 spans) are indexed directly (the sink's encoder and ``_bulk``
body) behind a private ``uitest-<random>-`` prefix; a real `spansieve query` process
serves the API and the UI; Selenium drives Chromium through search, filters, the back
button, the timeline, span details, collapsing and the error messages. The page's state
is read with one script per check (no stale elements); the console must stay free of
script errors.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from opensearchpy import OpenSearch
from selenium.common.exceptions import StaleElementReferenceException, TimeoutException
from selenium.webdriver.chrome.webdriver import WebDriver
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
    return {"cart": cart, "checkout": checkout, "search": search, "big": big}


TRACES = build_traces()
SPAN_COUNTS = {"cart": 3, "checkout": 6, "search": 2, "big": 1_201}


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
        yield settings
    finally:
        drop_store(opensearch, settings)


@pytest.fixture(scope="module")
def base(store: Settings) -> Iterator[str]:
    """A `spansieve query` process over the private store; its URL."""
    child = start_component("query", store)
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
    assert options(page, "service") == ["", "bulk", "cart", "frontend", "payment", "search"]
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
