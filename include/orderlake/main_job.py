"""The main job (`make run`): start the embedded platform and stream a Tianchi-shaped workload.

Steps: `orderlake up` -> replay the real Tianchi samples -> generate synthetic events over the
edge hosts -> wait until Kafka holds every line -> print the platform's status and counts.
The stack keeps running until `make down`. Size: ORDERLAKE_RUN_EVENTS (default 200,000).
"""

from __future__ import annotations

import os
import sys
import time

from orderlake import contracts
from orderlake.cli import format_status
from orderlake.errors import OrderlakeError
from orderlake.settings import Settings
from orderlake.stack import kafka, platform
from orderlake.workload.generator import generate_to_spool
from orderlake.workload.tianchi import SAMPLE_USER_INFO, SAMPLE_USER_LOG, replay_tianchi_to_spool


class Progress:
    """Prints each step with the time since the job started; one updating line while waiting."""

    def __init__(self) -> None:
        self.started = time.monotonic()
        self.tty = sys.stdout.isatty()
        self.last_line = 0.0

    def step(self, message: str) -> None:
        print(f"[{time.monotonic() - self.started:6.1f}s] {message}", flush=True)

    def waiting(self, message: str) -> None:
        now = time.monotonic()
        line = f"[{now - self.started:6.1f}s]   ... {message}"
        if self.tty:
            print(f"\r{line:<110}", end="", flush=True)
        elif now - self.last_line >= 5:  # logs and CI: a full line every few seconds
            print(line, flush=True)
            self.last_line = now

    def done_waiting(self) -> None:
        if self.tty:
            print()


def wait_for_kafka(
    settings: Settings, expected: dict[str, int], progress: Progress, timeout: float = 900
) -> dict[str, int]:
    """Wait until each topic's end offsets sum to at least the lines written for it."""
    deadline = time.monotonic() + timeout
    while True:
        offsets = kafka.end_offsets(settings.bootstrap)
        totals = {topic: sum(offsets.get(topic, {}).values()) for topic in expected}
        progress.waiting(", ".join(f"{t}: {totals[t]:,}/{n:,}" for t, n in expected.items()))
        if all(totals[t] >= n for t, n in expected.items()):
            progress.done_waiting()
            return totals
        if time.monotonic() > deadline:
            progress.done_waiting()
            raise OrderlakeError(
                f"Kafka did not receive every line within {timeout:.0f} s ({totals}); see the "
                f"Flume logs in {settings.logs_dir} (flume-edge-*.log, flume-collector.log)."
            )
        time.sleep(1)


def run(settings: Settings, events: int, seed: int = 7) -> int:
    progress = Progress()
    if platform.is_up(settings):
        progress.step(
            f"orderlake is already running under ORDERLAKE_HOME={settings.home}; showing its "
            "current state (`make down` first for a fresh run)."
        )
        print(format_status(platform.status(settings)))
        return 0

    progress.step(f"starting the platform under ORDERLAKE_HOME={settings.home}")
    platform.up(settings, progress=lambda msg: progress.step(f"  {msg}"))

    progress.step("replaying the real Tianchi samples (profiles first, then the log)")
    replay = replay_tianchi_to_spool(
        settings.spool_dir,
        user_info=SAMPLE_USER_INFO,
        user_log=SAMPLE_USER_LOG,
        rate=0,
        hosts=settings.host_names,
    )
    progress.step(
        f"  {replay['profiles']:,} profiles, {replay['actions']:,} actions "
        f"({replay['purchases_without_profile']} purchases by users without a profile)"
    )
    progress.step(f"generating {events:,} Tianchi-shaped actions over {settings.hosts} hosts")
    manifest, manifest_path = generate_to_spool(
        settings.spool_dir, events=events, rate=0, hosts=settings.host_names, seed=seed
    )
    progress.step(f"  {manifest['profiles']:,} profiles, manifest {manifest_path}")

    expected = {
        contracts.TOPIC_ACTIONS: replay["actions"] + manifest["events"],
        contracts.TOPIC_PROFILES: replay["profiles"] + manifest["profiles"],
    }
    progress.step("waiting for Flume to deliver every line to Kafka")
    totals = wait_for_kafka(settings, expected, progress)
    progress.step(f"Kafka holds {totals}")

    print()
    print(format_status(platform.status(settings)))
    print()
    print(
        "The platform keeps running: `.venv/bin/orderlake status` shows it, `make down` stops it."
    )
    return 0


def main() -> int:
    try:
        settings = Settings.from_env()
        events = int(os.environ.get("ORDERLAKE_RUN_EVENTS", "200000"))
        return run(settings, events)
    except OrderlakeError as exc:
        print(f"\norderlake: error: {exc}", file=sys.stderr)
        return exc.exit_code


if __name__ == "__main__":
    sys.exit(main())
