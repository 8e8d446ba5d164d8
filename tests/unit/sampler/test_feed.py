"""The sampler agent's loop: a failure exits the process instead of resuming over it."""

from __future__ import annotations

import asyncio

from agents.sampler import AGENT_FAILED_EXIT_CODE, feed


class FailingSampler:
    """Handles two events, then fails as a corrupted store or a bug would."""

    def __init__(self) -> None:
        self.handled: list[str] = []

    async def on_event(self, event: str) -> None:
        if event == "bad":
            raise RuntimeError("store corrupted")
        self.handled.append(event)


async def batches(*groups: list[str]):
    for group in groups:
        yield group


def test_a_failing_event_exits_with_the_agent_failed_code_and_handles_nothing_after():
    sampler, exits = FailingSampler(), []
    asyncio.run(feed(sampler, batches(["a", "b"], ["bad", "c"], ["d"]), exits.append))
    assert exits == [AGENT_FAILED_EXIT_CODE]
    assert sampler.handled == ["a", "b"]


def test_a_clean_stream_end_does_not_exit():
    sampler, exits = FailingSampler(), []
    asyncio.run(feed(sampler, batches(["a"], ["b"]), exits.append))
    assert exits == []
    assert sampler.handled == ["a", "b"]
