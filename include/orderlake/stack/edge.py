"""A Flume edge agent that is healthy only while it reads: the agent's JVM under a watchdog.

    python -m orderlake.stack.edge host-1       (the program `flume-edge-host-1` runs this)

The agent's tail source (InodeTailSource, jvm/flume) can stop while its JVM, its channel and
its monitoring page look fine: a position file that parses but has a wrong or missing field
makes the source fail at every start, and nothing else says so. This wrapper runs the agent's
JVM as its child and every few seconds compares the host's spool files (every generation the
source tails) with the positions the source has recorded:

- a position file the source cannot load (not a JSON list of {inode, pos, file[, head]}) is moved
  aside (``<file>.corrupt-<time>``, kept for a look), its valid entries are written back, and
  the agent restarts: files that lost their entry are read again from their start, which gives
  duplicates (removed downstream by event_id), never a gap;
- bytes waiting in the files while neither the positions nor the source's accepted count move
  for ``ORDERLAKE_EDGE_STALL_S`` (30 s), with room in the channel (a full channel is
  back-pressure, not a stall), restart the agent;
- the JVM exiting ends this process with its exit code, and the supervisor (supervisord, a
  container runtime) starts both again.

Each restart's reason goes to this program's log and to ``<run>/<program>.health.json``, which
`orderlake status` and the dashboard show. The JVM dies with this process (PR_SET_PDEATHSIG),
so a killed wrapper never leaves an agent behind that would hold the file channel's lock.
"""

from __future__ import annotations

import ctypes
import json
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from orderlake import contracts
from orderlake.errors import OrderlakeError
from orderlake.settings import Settings
from orderlake.stack import flume
from orderlake.workload.spool import generations

CHECK_S = 2.0
TORN_READ_S = 0.3  # a position file that changed within this is being written, not damaged
BACKPRESSURE_FILL = 90.0  # channel percent full at which a source waiting is expected
TAILED = (contracts.ACTIONS_FILE, contracts.PROFILES_FILE)
_PR_SET_PDEATHSIG = 1


# --- what the source has read (pure) -----------------------------------------------------------
@dataclass(frozen=True)
class Position:
    inode: int
    pos: int
    file: str
    head: str | None = None  # the source's checksum of the file's first bytes


def parse_positions(text: str) -> tuple[list[Position], list[str]]:
    """A position file -> (the entries the source can load, what is wrong with the others).

    The source loads a JSON list of objects with exactly a long ``inode``, a long ``pos``, a
    string ``file`` and optionally a string ``head`` (a checksum of the file's first bytes);
    one bad entry, or a file that is not such a list, stops it from starting. Problems are one
    short phrase each; an empty list of problems means it loads. An empty file loads as no
    positions (a TAILDIR agent of older releases left one when it tailed no file).
    """
    if not text.strip():
        return [], []
    try:
        doc = json.loads(text)
    except ValueError as exc:
        return [], [f"not JSON ({exc.args[0] if exc.args else exc})"]
    if not isinstance(doc, list):
        return [], [f"a JSON {type(doc).__name__}, not a list"]
    good, problems = [], []
    for i, entry in enumerate(doc):
        fields = entry if isinstance(entry, dict) else {}
        ok = (
            {"inode", "pos", "file"} <= set(fields) <= {"inode", "pos", "file", "head"}
            and all(type(fields[k]) is int and fields[k] >= 0 for k in ("inode", "pos"))
            and isinstance(fields["file"], str)
            and isinstance(fields.get("head", ""), str)
        )
        if ok:
            head = fields.get("head")
            good.append(Position(fields["inode"], fields["pos"], fields["file"], head))
        else:
            problems.append(f"entry {i} is {json.dumps(entry)[:120]}")
    return good, problems


@dataclass(frozen=True)
class SpoolFile:
    path: str
    inode: int
    size: int


def unread_bytes(files: list[SpoolFile], positions: list[Position]) -> int:
    """Bytes of complete lines in the tailed files beyond what the source recorded as read: a
    file is known to the source by its inode (a renamed file keeps its position); one it has no
    entry for is read from its start. ``SpoolFile.size`` ends at the file's last newline (a
    line still being written is not there to read yet)."""
    read = {p.inode: p.pos for p in positions}
    return sum(max(0, f.size - read.get(f.inode, 0)) for f in files)


def complete_size(path: Path, size: int, start: int, chunk: int = 65_536) -> int:
    """The offset just after the last newline of the file's first ``size`` bytes, looking no
    further back than ``start`` (what is read already); ``start`` when there is none."""
    with path.open("rb") as handle:
        end = size
        while end > start:
            begin = max(start, end - chunk)
            handle.seek(begin)
            found = handle.read(end - begin).rfind(b"\n")
            if found >= 0:
                return begin + found + 1
            end = begin
    return start


@dataclass
class Watch:
    """What the watchdog remembers between checks: when the source last made progress."""

    stall_s: float  # unread bytes and no progress for this long: the source is not reading
    positions: tuple = ()
    accepted: int | None = None
    progress_at: float = field(default_factory=time.monotonic)

    def assess(
        self,
        now: float,
        positions: list[Position],
        accepted: int | None,
        unread: int,
        channel_fill: float | None,
    ) -> str | None:
        """None while the source reads, waits with nothing to read or waits on a full channel;
        otherwise why it must be restarted."""
        key = tuple(sorted((p.inode, p.file, p.pos) for p in positions))
        if key != self.positions or accepted != self.accepted or unread == 0:
            self.positions, self.accepted, self.progress_at = key, accepted, now
            return None
        if channel_fill is not None and channel_fill >= BACKPRESSURE_FILL:
            self.progress_at = now  # waiting on the channel is expected: not the source's fault
            return None
        if now - self.progress_at < self.stall_s:
            return None
        return (
            f"its source read nothing for {now - self.progress_at:.0f} s while {unread:,} bytes "
            "wait in its spool files"
        )


# --- the agent's files --------------------------------------------------------------------------
def position_file(settings: Settings, agent: str) -> Path:
    return settings.flume_dir / agent / "taildir-position.json"


def health_file(settings: Settings, agent: str) -> Path:
    return settings.run_dir / f"{flume.component_name(agent)}.health.json"


def read_health(settings: Settings, agent: str) -> dict[str, Any]:
    try:
        return json.loads(health_file(settings, agent).read_text())
    except (OSError, ValueError):
        return {}


def spool_files(settings: Settings, agent: str, positions: list[Position]) -> list[SpoolFile]:
    """The files the agent tails, as the source names them (absolute paths), each sized up to
    its last complete line."""
    directory = settings.spool_dir / agent
    read = {p.inode: p.pos for p in positions}
    found = []
    for name in TAILED:
        for path in generations(directory, name) if directory.is_dir() else []:
            try:
                stat = path.stat()
                where = str(path.absolute())
                start = min(read.get(stat.st_ino, 0), stat.st_size)
                size = complete_size(path, stat.st_size, start)
            except FileNotFoundError:  # rotated or removed meanwhile: next check sees it
                continue
            found.append(SpoolFile(where, stat.st_ino, size))
    return found


def repair_positions(path: Path, files: list[SpoolFile], now: float) -> tuple[Path, int]:
    """Move a position file the source cannot load aside; write back its loadable entries
    that still name a present file (they keep their place; every other file is read again from
    its start). Returns (where the old file went, entries kept)."""
    good, _ = parse_positions(path.read_text(errors="replace"))
    present = {f.inode for f in files}
    kept = [p for p in good if p.inode in present]
    aside = path.with_name(f"{path.name}.corrupt-{int(now)}")
    path.rename(aside)
    text = json.dumps([
        {"inode": p.inode, "pos": p.pos, "file": p.file, **({"head": p.head} if p.head else {})}
        for p in kept
    ])  # fmt: skip
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    tmp.replace(path)
    return aside, len(kept)


# --- the wrapper ---------------------------------------------------------------------------------
class EdgeAgent:
    """The agent's JVM as a child, restarted with a reason when it stops reading."""

    def __init__(self, settings: Settings, agent: str):
        self.settings = settings
        self.agent = agent
        self.name = flume.component_name(agent)
        self.config = flume.write_config(settings, agent)
        self.child: subprocess.Popen | None = None
        # the JSON document of health_file, read back by `status` and the next wrapper
        self.health: dict[str, Any] = {"state": "starting", "restarts": 0, "reason": None}
        self.health.update({k: v for k, v in read_health(settings, agent).items() if k in (
            "restarts", "last_restart_at", "last_reason")})  # fmt: skip
        self.stopping = False

    def log(self, message: str) -> None:
        print(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} orderlake edge watch: {message}", flush=True)

    def write_health(self, **fields: object) -> None:
        self.health.update(fields, checked_at=time.time(), pid=self.child and self.child.pid)
        path = health_file(self.settings, self.agent)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.health))
        tmp.replace(path)

    def start_child(self) -> None:
        self.child = subprocess.Popen(
            flume.command(self.settings, self.agent, self.config),
            preexec_fn=_die_with_parent,  # noqa: PLW1509 - only prctl, before exec
        )

    def stop_child(self, timeout: float = 20.0) -> None:
        if self.child is None or self.child.poll() is not None:
            return
        if _stopped(self.child.pid):  # frozen (SIGSTOP): it cannot act on SIGTERM
            self.child.kill()
            self.child.wait()
            return
        self.child.terminate()
        try:
            self.child.wait(timeout)
        except subprocess.TimeoutExpired:
            self.child.kill()
            self.child.wait()

    def restart(self, reason: str) -> None:
        self.log(f"restarting {self.name}: {reason}")
        self.stop_child()
        self.health["restarts"] = int(self.health.get("restarts", 0)) + 1
        self.write_health(
            state="restarting", reason=reason, last_reason=reason, last_restart_at=time.time()
        )
        self.start_child()

    def check(self, watch: Watch) -> None:
        path = position_file(self.settings, self.agent)
        read = self.read_positions(path)
        if read is None:  # the next check reads it whole
            return
        positions, problems = read
        files = spool_files(self.settings, self.agent, positions)
        if problems:
            # the source writes the file only while it runs: stop it before touching it
            self.stop_child()
            aside, kept = repair_positions(path, files, time.time())
            self.restart(
                f"its position file {path} cannot be loaded ({'; '.join(problems)[:300]}); "
                f"kept as {aside.name}, {kept} valid entries kept, the other files are read "
                "again from their start (duplicates, no loss)"
            )
            watch.progress_at = time.monotonic()
            return
        metrics = flume.metrics(self.settings, self.agent, timeout=1.0) or {}
        summary = flume.summarize(metrics)
        accepted = summary.get("events_in") if metrics else None
        fill = summary.get("channel_fill_percent") if metrics else None
        unread = unread_bytes(files, positions)
        reason = watch.assess(time.monotonic(), positions, accepted, unread, fill)
        if reason is not None:
            self.restart(reason)
            watch.progress_at = time.monotonic()
            return
        state = "reading" if unread else "idle"
        if unread and fill is not None and fill >= BACKPRESSURE_FILL:
            state = "backpressure"
        self.write_health(state=state, reason=None, unread_bytes=unread, files=len(files))

    @staticmethod
    def read_positions(path: Path) -> tuple[list[Position], list[str]] | None:
        """The position file's entries and problems, or None while it is being written.

        The source replaces the file whole (by rename), but a writer of another kind (an agent
        of an older release rewrote it in place: truncate, then write) can be read between two
        steps: a file with problems is read again a moment later and counts as damaged only if
        it stayed the same."""

        def read() -> str:
            return path.read_text(errors="replace") if path.exists() else "[]"

        text = read()
        positions, problems = parse_positions(text)
        if problems:
            time.sleep(TORN_READ_S)
            if read() != text:
                return None
        return positions, problems

    def run(self) -> int:
        signal.signal(signal.SIGTERM, self._on_term)
        self.start_child()
        watch = Watch(self.settings.edge_stall_s)
        while True:
            code = self.child.poll() if self.child is not None else None
            if code is not None:
                if self.stopping:
                    return 0
                self.log(f"{self.name}'s JVM exited with code {code}")
                self.write_health(state="exited", reason=f"the JVM exited with code {code}")
                return code or 1
            try:
                self.check(watch)
            except OSError as exc:  # a file rotated away mid-check: look again next time
                self.log(f"check skipped: {exc}")
            time.sleep(CHECK_S)

    def _on_term(self, *_: object) -> None:
        self.stopping = True
        self.stop_child()
        raise SystemExit(0)


def _stopped(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2 :].split()[0] in ("T", "t")


def _die_with_parent() -> None:
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m orderlake.stack.edge HOST (e.g. host-1)", file=sys.stderr)
        return 2
    try:
        settings = Settings.from_env()
        if args[0] not in settings.host_names:
            raise OrderlakeError(
                f"{args[0]!r} is not an edge host of ORDERLAKE_HOSTS={settings.hosts}; "
                f"choose from {', '.join(settings.host_names)}."
            )
        return EdgeAgent(settings, args[0]).run()
    except OrderlakeError as exc:
        print(f"orderlake: error: {exc}", file=sys.stderr)
        return exc.exit_code


if __name__ == "__main__":
    sys.exit(main())
