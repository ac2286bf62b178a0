"""The fault battery's platform: Kafka, the Flume agents and the speed layer of its own, batch
jobs on the test session's warm Spark; its lake holds only what the battery writes."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.faults.battery import Battery
from tests.fixtures.stack import Platform, start_platform


@pytest.fixture(scope="module")
def battery(tmp_path_factory: pytest.TempPathFactory, spark_server: Platform) -> Iterator[Battery]:
    home = tmp_path_factory.mktemp("faults") / "home"
    platform = start_platform(home, only="kafka,flume,streaming", spark=spark_server)
    try:
        yield Battery(platform, tmp_path_factory.mktemp("faults-work"))
    finally:
        platform.cli("down", check=False, timeout=300)
