"""free_port: test and benchmark ports lie outside the range outgoing connections use."""

import socket

from orderlake.stack.ports import ephemeral_range, free_port, in_use


def test_free_ports_are_outside_the_ephemeral_range_distinct_and_bindable():
    low, high = ephemeral_range()
    ports = [free_port() for _ in range(50)]
    assert len(set(ports)) == len(ports)
    assert not any(low <= p <= high for p in ports)
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", ports[0]))
        s.listen()
        assert in_use(ports[0])
