"""Ports for test and benchmark servers."""

from __future__ import annotations

import socket

from bench.procs import _ephemeral_range, free_port


def test_ports_are_free_below_the_ephemeral_range_and_never_handed_out_twice() -> None:
    # A test stack asks for three ports before binding any: a port drawn twice would be
    # bound twice ("address already in use"). 2,000 draws from the 10,000 ports below
    # the ephemeral range would repeat one about 200 times if draws were independent.
    ports = [free_port() for _ in range(2000)]
    assert len(set(ports)) == len(ports)
    low = _ephemeral_range()[0]
    assert all(1024 <= p < low for p in ports)
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", ports[-1]))  # free when handed out
