"""SpoolWriter: lines -> <spool>/<host>/<file>; rotation, rate limit, flushing, sequence numbers."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from orderlake.errors import OrderlakeError, UsageError
from orderlake.workload.spool import SEQ_FILE, SpoolWriter, generations

HOSTS = ["host-1", "host-2"]


def test_writes_str_and_bytes_lines_as_is(tmp_path: Path) -> None:
    huge = b"x" * (3 << 20)  # bigger than the writer's pending-bytes bound
    invalid_utf8 = b"\xff\xfe not utf-8 \xc3"
    with SpoolWriter(tmp_path, HOSTS) as writer:
        writer.write("host-1", "actions.log", '{"a":"é"}')
        writer.write("host-1", "actions.log", invalid_utf8)
        writer.write("host-1", "actions.log", huge)
        writer.write("host-2", "profiles.log", "p")
    assert (tmp_path / "host-1" / "actions.log").read_bytes() == (
        '{"a":"é"}\n'.encode() + invalid_utf8 + b"\n" + huge + b"\n"
    )
    assert (tmp_path / "host-2" / "profiles.log").read_bytes() == b"p\n"
    assert writer.lines_written == 4


def test_appends_to_existing_files(tmp_path: Path) -> None:
    for text in ("one", "two"):
        with SpoolWriter(tmp_path, HOSTS) as writer:
            writer.write("host-1", "actions.log", text)
    assert (tmp_path / "host-1" / "actions.log").read_text() == "one\ntwo\n"


def test_rotation_by_rename_keeps_every_line_exactly_once(tmp_path: Path) -> None:
    lines = [f"line-{i:05d}-" + "y" * (i % 37) for i in range(3000)]
    host_dir = tmp_path / "host-1"
    with SpoolWriter(tmp_path, HOSTS, rotate_bytes=4096) as writer:
        writer.write("host-1", "actions.log", lines[0])
        writer.flush()
        first_inode = (host_dir / "actions.log").stat().st_ino
        for line in lines[1:]:
            writer.write("host-1", "actions.log", line)
    files = generations(host_dir, "actions.log")
    assert len(files) > 10
    assert all(p.stat().st_size <= 4096 for p in files)
    written = [line for p in files for line in p.read_text().splitlines()]
    assert written == lines
    # Renamed, not copied: the oldest rotation is the very file the first line went into.
    assert files[0].stat().st_ino == first_inode


def test_a_rotated_file_is_renamed_once_to_the_next_generation(tmp_path: Path) -> None:
    host_dir = tmp_path / "host-2"
    with SpoolWriter(tmp_path, HOSTS) as writer:
        for text in ("a", "b", "c"):
            writer.write("host-2", "profiles.log", text)
            writer.flush()
            inode = (host_dir / "profiles.log").stat().st_ino
            writer.rotate("host-2", "profiles.log")
            # the older generations keep their names: an agent that has not read them yet
            # finds them where they were
            assert (host_dir / f"profiles.log.{'abc'.index(text) + 1}").stat().st_ino == inode
        writer.write("host-2", "profiles.log", "d")
    assert [p.name for p in generations(host_dir, "profiles.log")] == [
        "profiles.log.1",
        "profiles.log.2",
        "profiles.log.3",
        "profiles.log",
    ]
    assert [p.read_text() for p in generations(host_dir, "profiles.log")] == [
        "a\n",
        "b\n",
        "c\n",
        "d\n",
    ]


def test_a_generation_number_is_never_used_twice(tmp_path: Path) -> None:
    """A shipped and deleted generation's name stays retired, also for the next writer: a new
    file under an old name could get the old file's inode back and pass for it in Flume."""
    host_dir = tmp_path / "host-1"
    with SpoolWriter(tmp_path, HOSTS) as writer:
        writer.write("host-1", "actions.log", "one")
        writer.rotate("host-1", "actions.log")
        writer.write("host-1", "actions.log", "two")
        writer.rotate("host-1", "actions.log")
    (host_dir / "actions.log.2").unlink()
    (host_dir / "actions.log.1").unlink()
    with SpoolWriter(tmp_path, HOSTS) as writer:
        writer.write("host-1", "actions.log", "three")
        writer.rotate("host-1", "actions.log")
    assert [p.name for p in generations(host_dir, "actions.log")] == ["actions.log.3"]
    # a rotation with nothing written renames nothing
    with SpoolWriter(tmp_path, HOSTS) as writer:
        writer.rotate("host-1", "actions.log")
    assert [p.name for p in generations(host_dir, "actions.log")] == ["actions.log.3"]


def test_generations_ignores_other_files(tmp_path: Path) -> None:
    for name in ("actions.log", "actions.log.2", "actions.log.10", "actions.log.0",
                 "actions.log.1.gz", "profiles.log.1", "actions.logx.1"):  # fmt: skip
        (tmp_path / name).write_text("")
    assert [p.name for p in generations(tmp_path, "actions.log")] == [
        "actions.log.2",
        "actions.log.10",
        "actions.log",
    ]


def test_a_line_larger_than_rotate_bytes_gets_a_file_of_its_own(tmp_path: Path) -> None:
    with SpoolWriter(tmp_path, HOSTS, rotate_bytes=10) as writer:
        writer.write("host-1", "actions.log", "short")
        writer.write("host-1", "actions.log", "a much longer line")
        writer.write("host-1", "actions.log", "tail")
    contents = [p.read_text() for p in generations(tmp_path / "host-1", "actions.log")]
    assert contents == ["short\n", "a much longer line\n", "tail\n"]


def test_rate_limit_is_roughly_honoured(tmp_path: Path) -> None:
    # 2,000 lines at 1,000/s need ~2 s; only a lower bound is asserted (a busy machine is slower).
    started = time.monotonic()
    with SpoolWriter(tmp_path, HOSTS, rate=1000) as writer:
        for i in range(2000):
            writer.write(HOSTS[i % 2], "actions.log", str(i))
    assert time.monotonic() - started >= 1.5
    assert sum(len((tmp_path / h / "actions.log").read_text().splitlines()) for h in HOSTS) == 2000


def test_pending_lines_are_flushed_while_the_caller_is_idle(tmp_path: Path) -> None:
    with SpoolWriter(tmp_path, HOSTS) as writer:
        writer.write("host-1", "actions.log", "waiting")
        path = tmp_path / "host-1" / "actions.log"
        deadline = time.monotonic() + 5
        while path.read_bytes() != b"waiting\n" and time.monotonic() < deadline:
            time.sleep(0.01)
        assert path.read_bytes() == b"waiting\n"


def test_sequence_numbers_continue_across_writers(tmp_path: Path) -> None:
    with SpoolWriter(tmp_path, HOSTS) as writer:
        assert [writer.next_seq("host-1", "actions.log") for _ in range(3)] == [1, 2, 3]
        assert writer.next_seq("host-1", "profiles.log") == 1
        assert writer.next_seq("host-2", "actions.log") == 1
    assert json.loads((tmp_path / "host-1" / SEQ_FILE).read_text()) == {
        "actions.log": 3,
        "profiles.log": 1,
    }
    with SpoolWriter(tmp_path, HOSTS) as writer:
        assert writer.next_seq("host-1", "actions.log") == 4
        assert writer.next_seq("host-2", "actions.log") == 2


def test_sequence_reservation_is_saved_before_numbers_are_used(tmp_path: Path) -> None:
    # Were the process killed now, the saved value must already cover every number handed out.
    writer = SpoolWriter(tmp_path, HOSTS)
    try:
        issued = [writer.next_seq("host-1", "actions.log") for _ in range(5)]
        saved = json.loads((tmp_path / "host-1" / SEQ_FILE).read_text())
        assert saved["actions.log"] >= max(issued)
    finally:
        writer.close()


def test_second_writer_on_the_same_host_is_refused(tmp_path: Path) -> None:
    with SpoolWriter(tmp_path, HOSTS):
        with pytest.raises(OrderlakeError, match="in use by another orderlake producer"):
            SpoolWriter(tmp_path, ["host-2"])
        SpoolWriter(tmp_path, ["host-3"]).close()  # another host is fine
    SpoolWriter(tmp_path, HOSTS).close()  # and the lock is released on close


def test_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(UsageError):
        SpoolWriter(tmp_path, [])
    with pytest.raises(UsageError):
        SpoolWriter(tmp_path, ["../escape"])
    with pytest.raises(UsageError):
        SpoolWriter(tmp_path, HOSTS, rate=-1)
    with pytest.raises(UsageError):
        SpoolWriter(tmp_path, HOSTS, rotate_bytes=0)
    with SpoolWriter(tmp_path, HOSTS) as writer:
        with pytest.raises(ValueError, match="not one of this writer's hosts"):
            writer.write("host-9", "actions.log", "x")
        with pytest.raises(ValueError, match="plain name"):
            writer.write("host-1", ".seq.json", "x")
    with pytest.raises(ValueError, match="closed"):
        writer.write("host-1", "actions.log", "x")
