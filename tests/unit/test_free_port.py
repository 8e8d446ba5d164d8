"""free_port: a listening port for a private test service, outside the ephemeral range."""

from __future__ import annotations

import socket

from pipeline.local import run
from pipeline.local.run import free_port


def test_the_port_is_free_and_below_the_ephemeral_range():
    low, _high = run._ephemeral_range()
    ports = {free_port() for _ in range(20)}
    assert all(1024 <= port < low for port in ports)
    for port in ports:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", port))  # nothing holds it


def test_a_taken_port_is_not_handed_out(monkeypatch):
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        taken = held.getsockname()[1]
        held.listen()
        choices = iter([taken, taken, taken + 1 if taken < 65535 else taken - 1])
        monkeypatch.setattr(run.random, "choice", lambda _candidates: next(choices))
        assert free_port() != taken
