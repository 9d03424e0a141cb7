"""Fixtures the central tests share."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from testbed.nats_cluster import NatsCluster


@pytest.fixture(scope="module")
def cluster() -> Iterator[NatsCluster]:
    """One 3-node nats cluster per test module (about 5 s to elect leaders and create the MQTT
    streams); tests that kill a node bring it back before they end."""
    c = NatsCluster()
    c.start()
    try:
        yield c
    finally:
        c.cleanup()
