"""Adaptive rates table -> Jaeger remote-sampling strategy: parsing and checking the table,
one service's operations, the default, the fallback, the ``service`` parameter.

Reading the table from Redis (SCAN, cache, outage) is tested on the real Redis in
tests/integration/test_query_sampling.py.
"""

from __future__ import annotations

import orjson
import pytest

from pipeline.query.params import ParamError, sampling_service
from pipeline.query.sampling import (
    FALLBACK_RATE,
    RatesTable,
    TableError,
    _glob_escaped,
    fallback_strategy,
    parse_table,
    strategy,
)

TABLE = {
    "policy": "adaptive",
    "slot": 177600123,
    "interval": 10.0,
    "updated": 1765000000.5,
    "default": 0.05,
    "floor_traces_per_second": 0.0167,
    "operations": [
        ["checkout", "POST /orders", 0.02],
        ["search", "GET /search", 1.0],
        ["checkout", "GET /orders/{id}", 0.5],
        ["search", "POST /orders", 0.3],  # same name, other service
    ],
}


def table(**changes: object) -> RatesTable:
    return parse_table("keep-300", orjson.dumps({**TABLE, **changes}))


def test_strategy_lists_only_the_services_operations():
    assert strategy(table(), "checkout") == {
        "strategyType": "PROBABILISTIC",
        "probabilisticSampling": {"samplingRate": 0.05},
        "operationSampling": {
            "defaultSamplingProbability": 0.05,
            "defaultLowerBoundTracesPerSecond": 0.0167,
            "perOperationStrategies": [
                {"operation": "POST /orders", "probabilisticSampling": {"samplingRate": 0.02}},
                {"operation": "GET /orders/{id}", "probabilisticSampling": {"samplingRate": 0.5}},
            ],
        },
    }
    search = strategy(table(), "search")["operationSampling"]["perOperationStrategies"]
    assert search == [
        {"operation": "GET /search", "probabilisticSampling": {"samplingRate": 1.0}},
        {"operation": "POST /orders", "probabilisticSampling": {"samplingRate": 0.3}},
    ]


def test_a_service_not_in_the_table_gets_the_default():
    answer = strategy(table(), "billing")
    assert answer["probabilisticSampling"] == {"samplingRate": 0.05}
    assert answer["operationSampling"]["defaultSamplingProbability"] == 0.05
    assert answer["operationSampling"]["perOperationStrategies"] == []
    # Service names are matched exactly, as the SDK sends its service.name.
    assert strategy(table(), "Checkout")["operationSampling"]["perOperationStrategies"] == []


def test_no_table_samples_everything_without_operation_sampling():
    assert FALLBACK_RATE == 1.0
    expected = {"strategyType": "PROBABILISTIC", "probabilisticSampling": {"samplingRate": 1.0}}
    assert strategy(None, "checkout") == expected == fallback_strategy()


def test_table_parsed_and_indexed_by_service():
    parsed = table()
    assert parsed.policy == "keep-300"
    assert parsed.default == 0.05 and parsed.floor_traces_per_second == 0.0167
    assert parsed.operations == {
        "checkout": {"POST /orders": 0.02, "GET /orders/{id}": 0.5},
        "search": {"GET /search": 1.0, "POST /orders": 0.3},
    }


def test_minimal_table_and_integer_probabilities():
    parsed = parse_table("p", b'{"default": 1}')
    assert (parsed.default, parsed.floor_traces_per_second, parsed.operations) == (1.0, 0.0, {})
    assert strategy(parsed, "a")["probabilisticSampling"] == {"samplingRate": 1.0}
    zero = parse_table("p", b'{"default": 0, "operations": [["a", "x", 0]]}')
    assert zero.operations == {"a": {"x": 0.0}}


def test_an_operation_listed_twice_keeps_the_last_probability():
    parsed = table(operations=[["a", "x", 0.1], ["a", "y", 0.2], ["a", "x", 0.3]])
    assert parsed.operations == {"a": {"x": 0.3, "y": 0.2}}


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"{oops", "not JSON"),
        (b"[1, 2]", "expected a JSON object, got list"),
        (b"{}", "default: expected a probability in [0, 1], got None"),
        (b'{"default": 1.5}', "default: expected a probability in [0, 1], got 1.5"),
        (b'{"default": true}', "default: expected a probability in [0, 1], got True"),
        (b'{"default": "0.1"}', "default: expected a probability in [0, 1], got '0.1'"),
        (
            b'{"default": 0.1, "floor_traces_per_second": -1}',
            "floor_traces_per_second: expected a number >= 0, got -1",
        ),
        (b'{"default": 0.1, "operations": {}}', "operations: expected a list"),
        (
            b'{"default": 0.1, "operations": [["a", "x"]]}',
            "operations[0]: expected [service, operation, probability], got ['a', 'x']",
        ),
        (
            b'{"default": 0.1, "operations": [["a", "x", 0.5], ["a", 7, 0.5]]}',
            "operations[1]: expected [service, operation, probability]",
        ),
        (
            b'{"default": 0.1, "operations": [["a", "x", -0.01]]}',
            "operations[0]: expected a probability in [0, 1], got -0.01",
        ),
    ],
)
def test_bad_tables_are_refused_with_the_place(raw: bytes, message: str):
    with pytest.raises(TableError) as caught:
        parse_table("p", raw)
    assert str(caught.value).startswith(message)


def test_service_parameter():
    assert sampling_service([("service", "checkout")]) == "checkout"
    assert sampling_service([("other", "x"), ("service", " spaced ")]) == " spaced "
    for pairs in ([], [("service", "")], [("service", "  ")], [("services", "a")]):
        with pytest.raises(ParamError) as caught:
            sampling_service(pairs)
        assert str(caught.value) == "service: is required: the SDK's service name, ?service=NAME"
    with pytest.raises(ParamError) as caught:
        sampling_service([("service", "a"), ("service", "b")])
    assert str(caught.value) == "service: given 2 times; expected once"


def test_key_prefix_is_matched_literally():
    assert _glob_escaped("spansieve") == "spansieve"
    assert _glob_escaped("a*b?[c]\\") == "a\\*b\\?\\[c\\]\\\\"
