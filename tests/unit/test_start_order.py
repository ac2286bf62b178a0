"""`orderlake up`'s start order: a component starts once what it needs is ready, independent
ones together (fake programs: this is the scheduling rule, not the processes)."""

import threading

import pytest

from orderlake.errors import OrderlakeError
from orderlake.stack.component import Component
from orderlake.stack.platform import start_when_needed
from orderlake.stack.supervisor import Program


class Recorder:
    """Stands in for supervisord: records each start and each readiness, in order."""

    def __init__(self) -> None:
        self.events: list[str] = []
        self.lock = threading.Lock()
        self.edges_started = threading.Event()

    def start(self, name: str) -> None:
        with self.lock:
            self.events.append(f"start {name}")
        if name.startswith("flume-edge"):
            self.edges_started.set()

    def component(self, name: str, needs: tuple[str, ...] = ()) -> tuple[Component, list]:
        def ready() -> None:
            if name == "spark":  # the slowest start, as for real: ready only once the edges
                self.edges_started.wait(timeout=10)  # started (never, if waited in turn)
            with self.lock:
                self.events.append(f"ready {name}")

        part = Component(name, lambda: [], ready=ready, needs=needs)
        return part, [Program(name, ["true"])]


def platform(rec: Recorder, only: set[str] | None = None) -> list[tuple[Component, list]]:
    parts = [
        rec.component("kafka"),
        rec.component("flume-collector", ("kafka",)),
        rec.component("flume-edge-host-1", ("flume-collector",)),
        rec.component("spark"),
        rec.component("streaming", ("kafka",)),
        rec.component("airflow", ("spark", "streaming")),
        rec.component("dashboard"),
    ]
    return [p for p in parts if only is None or p[0].name in only]


def test_independent_components_start_together_and_each_after_what_it_needs():
    rec = Recorder()
    start_when_needed(rec, platform(rec), lambda _: None)  # type: ignore[arg-type]
    first_ready = rec.events.index("ready kafka")
    assert sorted(rec.events[:first_ready]) == ["start dashboard", "start kafka", "start spark"]
    order = rec.events.index
    assert order("start flume-collector") > order("ready kafka")
    assert order("start streaming") > order("ready kafka")
    assert order("start flume-edge-host-1") > order("ready flume-collector")
    assert order("start airflow") > max(order("ready spark"), order("ready streaming"))
    # readiness is awaited side by side: the edges do not wait for the slow Spark server
    assert order("start flume-edge-host-1") < order("ready spark")
    assert {e for e in rec.events if e.startswith("ready")} == {
        f"ready {p.name}" for p, _ in platform(Recorder())
    }


def test_needs_left_out_by_only_count_as_met():
    rec = Recorder()
    start_when_needed(rec, platform(rec, {"streaming", "airflow"}), lambda _: None)  # type: ignore[arg-type]
    assert rec.events == ["start streaming", "ready streaming", "start airflow", "ready airflow"]


def test_the_first_readiness_that_fails_is_raised():
    rec = Recorder()
    parts = platform(rec, {"kafka", "streaming"})

    def no_broker() -> None:
        raise OrderlakeError("kafka did not answer")

    broken = Component("kafka", lambda: [], ready=no_broker)
    with pytest.raises(OrderlakeError, match="kafka did not answer"):
        start_when_needed(rec, [(broken, parts[0][1]), parts[1]], lambda _: None)  # type: ignore[arg-type]
    assert "start streaming" not in rec.events


def test_a_need_that_never_starts_is_one_sentence():
    rec = Recorder()
    loop = [rec.component("a", ("b",)), rec.component("b", ("a",))]
    with pytest.raises(OrderlakeError, match="need components that never start"):
        start_when_needed(rec, loop, lambda _: None)  # type: ignore[arg-type]
