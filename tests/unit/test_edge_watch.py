"""The edge agent's watchdog: what its tail source can load, what is unread, when a source is
stalled."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest

from orderlake.stack import edge
from orderlake.stack.edge import Position, SpoolFile, Watch

STALL_S = 30.0  # the default ORDERLAKE_EDGE_STALL_S

GOOD = [{"inode": 11, "pos": 40, "file": "/spool/host-1/actions.log"}]


def test_a_position_file_the_source_loads():
    positions, problems = edge.parse_positions(json.dumps(GOOD))
    assert positions == [Position(11, 40, "/spool/host-1/actions.log")] and problems == []
    assert edge.parse_positions("[]") == ([], [])
    with_head = [{**GOOD[0], "head": "1c291ca3"}]  # the checksum of the file's first bytes
    assert edge.parse_positions(json.dumps(with_head)) == (
        [Position(11, 40, "/spool/host-1/actions.log", "1c291ca3")],
        [],
    )


def test_an_empty_position_file_loads():
    """TAILDIR (the source of older releases) truncated the file and wrote nothing while it
    tailed no file (an empty spool): that is not damage (the watchdog restarted agents in a loop
    on empty spools)."""
    assert edge.parse_positions("") == ([], [])
    assert edge.parse_positions("\n") == ([], [])


def test_a_position_file_caught_mid_write_is_read_again_not_repaired(tmp_path: Path):
    path = tmp_path / "taildir-position.json"
    path.write_text(json.dumps(GOOD)[:20])  # torn, and it stays so: damaged
    assert edge.EdgeAgent.read_positions(path)[1]
    whole = json.dumps(GOOD)

    def finish_writing():
        time.sleep(edge.TORN_READ_S / 3)
        path.write_text(whole)

    writer = threading.Thread(target=finish_writing)
    path.write_text(whole[:20])
    writer.start()
    assert edge.EdgeAgent.read_positions(path) is None  # being written: looked at next check
    writer.join()
    assert edge.EdgeAgent.read_positions(path) == ([Position(11, 40, GOOD[0]["file"])], [])


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ('[{"inode": 11, "pos": 40, "fi', "not JSON"),  # truncated by a crash
        ('{"inode": 11}', "a JSON dict, not a list"),
        ('[{"inode": 11, "pos": 40}]', "entry 0"),  # a field missing
        ('[{"inode": "11", "pos": 40, "file": "a"}]', "entry 0"),  # a wrong type
        ('[{"inode": 11, "pos": -1, "file": "a"}]', "entry 0"),
        ('[{"inode": 11, "pos": 40, "file": "a", "extra": 1}]', "entry 0"),  # the source chokes
        ('[{"inode": 11, "pos": 40, "file": "a", "head": 7}]', "entry 0"),
        ('[{"inode": 11, "pos": 40, "file": "a"}, 7]', "entry 1"),
    ],
)
def test_position_files_the_source_cannot_load(text, problem):
    _, problems = edge.parse_positions(text)
    assert problems and problem in problems[0]


def test_unread_bytes_follow_the_sources_inode_keys():
    files = [
        SpoolFile("/s/actions.log.1", 11, 100),  # renamed since: its position still applies
        SpoolFile("/s/actions.log", 12, 50),
        SpoolFile("/s/profiles.log", 13, 30),  # no entry: read from its start
    ]
    positions = [Position(11, 100, "/s/actions.log"), Position(12, 20, "/s/actions.log")]
    assert edge.unread_bytes(files, positions) == 0 + 30 + 30
    assert edge.unread_bytes(files, [Position(12, 50, "/s/actions.log")]) == 100 + 0 + 30


def test_a_line_still_being_written_is_not_unread(tmp_path: Path):
    path = tmp_path / "actions.log"
    path.write_bytes(b"one\ntwo\nthr")
    size = path.stat().st_size
    assert edge.complete_size(path, size, 0) == 8
    assert edge.complete_size(path, size, 8) == 8  # nothing complete beyond what was read
    assert edge.complete_size(path, size, 0, chunk=2) == 8
    path.write_bytes(b"x" * 100)
    assert edge.complete_size(path, 100, 0, chunk=16) == 0


def test_a_source_is_stalled_only_after_it_read_nothing_for_a_while_with_bytes_waiting():
    positions = [Position(1, 10, "/s/actions.log")]
    watch = Watch(STALL_S)
    assert watch.assess(0.0, positions, 5, unread=500, channel_fill=0.0) is None
    assert watch.assess(STALL_S - 1, positions, 5, unread=500, channel_fill=0.0) is None
    reason = watch.assess(STALL_S + 1, positions, 5, unread=500, channel_fill=0.0)
    assert reason and "read nothing" in reason and "500 bytes" in reason


def test_progress_an_empty_spool_or_a_full_channel_is_not_a_stall():
    positions = [Position(1, 10, "/s/actions.log")]
    moved = [Position(1, 20, "/s/actions.log")]
    watch = Watch(STALL_S)
    watch.assess(0.0, positions, 5, unread=500, channel_fill=0.0)
    assert watch.assess(100.0, moved, 5, unread=490, channel_fill=0.0) is None  # moved
    assert watch.assess(200.0, moved, 6, unread=490, channel_fill=0.0) is None  # accepted more
    assert watch.assess(300.0, moved, 6, unread=0, channel_fill=0.0) is None  # nothing to read
    assert watch.assess(400.0, moved, 6, unread=5, channel_fill=99.0) is None  # back-pressure
    assert watch.assess(400.0 + STALL_S - 1, moved, 6, unread=5, channel_fill=0.0) is None


def test_repair_keeps_the_loadable_entries_of_present_files(tmp_path: Path):
    path = tmp_path / "taildir-position.json"
    renamed = {"inode": 13, "pos": 9, "file": "/spool/host-1/actions.log", "head": "ab12"}
    entries = [*GOOD, {"inode": 99, "pos": 5, "file": "/gone"}, {"inode": 12}, renamed]
    path.write_text(json.dumps(entries))
    files = [
        SpoolFile("/spool/host-1/actions.log", 11, 100),
        SpoolFile("/spool/host-1/actions.log.1", 13, 9),  # renamed: known by its inode
    ]
    aside, kept = edge.repair_positions(path, files, now=1_000.0)
    assert kept == 2 and aside.name == "taildir-position.json.corrupt-1000"
    assert json.loads(aside.read_text()) == entries
    assert json.loads(path.read_text()) == [*GOOD, renamed]
    assert edge.parse_positions(path.read_text())[1] == []
