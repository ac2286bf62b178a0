"""Producer lines -> <spool>/<host>/<file> (the log files the Flume edge agents tail).

``SpoolWriter`` appends newline-terminated lines for a fixed set of simulated hosts with

- an optional rate limit over all files (token bucket; sleeps in ~10 ms steps, so the rate
  holds smoothly without a busy loop),
- batched writes: a background flusher writes whatever is pending every ~10 ms, so a line never
  waits in memory for long, even when the caller goes idle,
- rotation by rename to a generation number that is never used again (``actions.log`` ->
  ``actions.log.1``, the next rotation -> ``actions.log.2``, ...; older files are never renamed a
  second time), never copy-truncate: the edge agents tail every generation by inode, so lines a
  stopped or slow agent has not read yet are read later wherever they are, and a renamed file is
  read on from where it was,
- a per-(host, file) sequence number kept in ``<spool>/<host>/.seq.json``, so repeated runs into the
  same spool continue numbering and generated event ids never repeat, not even after a crash.

Example::

    with SpoolWriter(Path("spool"), ["host-1", "host-2"], rate=1000) as writer:
        seq = writer.next_seq("host-1", "actions.log")
        writer.write("host-1", "actions.log", f'{{"event_id":"host-1:actions.log:{seq}"}}')
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from orderlake import contracts
from orderlake.errors import OrderlakeError, UsageError

SEQ_FILE = ".seq.json"
LOCK_FILE = ".lock"
# key of a file's last rotation number in SEQ_FILE (':' is never part of a spool file name)
_ROTATIONS = "rotations:{name}"

# Sequence numbers are reserved in blocks and each reservation is saved before its first number is
# handed out: after a crash the next run starts beyond anything that may have been written (a gap
# in the numbering, never a repeated event id). A clean close saves the exact last number.
_SEQ_BLOCK = 10_000
# How long a written line may wait in memory, and the rate limiter's sleep step.
_FLUSH_INTERVAL_S = 0.01
# Bound on memory held for unflushed lines (matters for huge lines at high rates).
_MAX_PENDING_BYTES = 4 << 20
_NAME_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")


@dataclass
class _OpenFile:
    path: Path
    fd: int
    size: int  # bytes on disk plus bytes pending: what the file will hold after the next flush
    pending: list[bytes] = field(default_factory=list)


class SpoolWriter:
    """Append lines to ``<spool_dir>/<host>/<file_name>`` for a fixed set of hosts.

    ``rate`` is lines per second over all files (0 = as fast as possible); ``rotate_bytes`` rotates
    a file by rename before a line would make it larger than that (a single larger line still gets
    a file of its own). Use it as a context manager, or call ``close()``: closing flushes, saves the
    sequence numbers and releases the per-host lock that keeps two producers out of one spool.
    One producer thread per writer (the internal lock only coordinates with the flusher thread).
    """

    def __init__(
        self,
        spool_dir: Path,
        hosts: list[str],
        rate: float = 0,
        rotate_bytes: int | None = None,
    ) -> None:
        if not hosts:
            raise UsageError("SpoolWriter needs at least one host; pass e.g. ['host-1'].")
        for host in hosts:
            if not _NAME_RE.fullmatch(host):
                raise UsageError(
                    f"Host name {host!r} cannot be a spool directory name; use letters, digits, "
                    "'-', '_' or '.' (e.g. 'host-1')."
                )
        if len(set(hosts)) != len(hosts):
            raise UsageError(f"Host names must be unique, got {hosts}.")
        if rate < 0:
            raise UsageError(
                f"The rate must be >= 0 lines per second (0 = unthrottled), got {rate}."
            )
        if rotate_bytes is not None and rotate_bytes <= 0:
            raise UsageError(f"rotate_bytes must be a positive byte count, got {rotate_bytes}.")

        self.spool_dir = Path(spool_dir)
        self.hosts = list(hosts)
        self.rate = float(rate)
        self.rotate_bytes = rotate_bytes
        self.lines_written = 0

        self._files: dict[tuple[str, str], _OpenFile] = {}
        self._dirty: dict[tuple[str, str], _OpenFile] = {}
        self._pending_bytes = 0
        self._lock = threading.Lock()
        self._closed = False

        # Token bucket: one token per line; sleeping until ~10 ms worth of tokens have accrued keeps
        # the number of sleeps (and their overhead) at ~100/s whatever the rate. The cap of two
        # steps absorbs oversleeping without allowing long bursts after the caller was slow.
        self._step = max(1.0, self.rate * _FLUSH_INTERVAL_S)
        self._tokens = self._step
        self._cap = 2 * self._step
        self._refilled_at = time.monotonic()
        self._prepaid = 0

        self._seq: dict[str, dict[str, int]] = {}
        self._reserved: dict[str, dict[str, int]] = {}
        self._lock_fds: dict[str, int] = {}
        try:
            for host in self.hosts:
                host_dir = self.spool_dir / host
                host_dir.mkdir(parents=True, exist_ok=True)
                self._lock_host(host, host_dir)
                saved = _load_seq(host_dir / SEQ_FILE)
                self._seq[host] = dict(saved)
                self._reserved[host] = dict(saved)
        except BaseException:
            self._release_locks()
            raise

        self._stop = threading.Event()
        self._flusher = threading.Thread(
            target=self._flush_periodically, name="spool-flusher", daemon=True
        )
        self._flusher.start()

    # --- context manager ------------------------------------------------------------------------
    def __enter__(self) -> SpoolWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # --- public API -----------------------------------------------------------------------------
    def write(self, host: str, file_name: str, line: str | bytes) -> None:
        """Append ``line`` plus a newline; bytes are written as they are (no validation)."""
        data = line.encode("utf-8") if isinstance(line, str) else bytes(line)
        if self.rate:
            if self._prepaid:
                self._prepaid -= 1
            else:
                self._tokens -= 1.0
                if self._tokens < 0:
                    self._wait_for_tokens()
        size = len(data) + 1
        with self._lock:
            key = (host, file_name)
            f = self._files.get(key) or self._open(host, file_name)
            if self.rotate_bytes is not None and f.size and f.size + size > self.rotate_bytes:
                self._rotate_locked(key)
                f = self._open(host, file_name)
            if not f.pending:
                self._dirty[key] = f
            f.pending.append(data)
            f.pending.append(b"\n")
            f.size += size
            self.lines_written += 1
            self._pending_bytes += size
            if self._pending_bytes >= _MAX_PENDING_BYTES:
                self._flush_locked()

    def wait_turn(self) -> None:
        """Take the rate limiter's token for the next ``write`` now (no-op when unthrottled).

        Live producers call this before stamping a line with the wall clock, so the time in the
        line is taken after any throttling sleep, not before it.
        """
        if self.rate:
            self._tokens -= 1.0
            if self._tokens < 0:
                self._wait_for_tokens()
            self._prepaid += 1

    def next_seq(self, host: str, file_name: str) -> int:
        """Return the next sequence number (1, 2, ...) of ``<host>/<file_name>``, across runs."""
        seqs = self._host_seqs(host)
        seq = seqs.get(file_name, 0) + 1
        seqs[file_name] = seq
        reserved = self._reserved[host]
        if seq > reserved.get(file_name, 0):
            reserved[file_name] = seq + _SEQ_BLOCK - 1
            _save_seq(self.spool_dir / host / SEQ_FILE, {**seqs, **reserved})
        return seq

    def rotate(self, host: str, file_name: str) -> None:
        """Rotate ``<host>/<file_name>`` now: rename it to ``<file_name>.<next generation>``."""
        self._host_seqs(host)  # validates the host
        _check_file_name(file_name)
        with self._lock:
            if self._closed:
                raise ValueError("This SpoolWriter is closed; open a new one to rotate files.")
            self._rotate_locked((host, file_name))

    def flush(self) -> None:
        """Write every pending line to its file."""
        with self._lock:
            self._flush_locked()

    def close(self) -> None:
        """Flush, close the files, save the sequence numbers and release the host locks."""
        if self._closed:
            return
        self._stop.set()
        self._flusher.join()
        with self._lock:
            self._closed = True
            try:
                self._flush_locked()
            finally:
                for f in self._files.values():
                    os.close(f.fd)
                self._files.clear()
                try:
                    for host, seqs in self._seq.items():
                        if seqs != self._reserved[host]:
                            _save_seq(self.spool_dir / host / SEQ_FILE, seqs)
                finally:
                    self._release_locks()

    # --- internals ------------------------------------------------------------------------------
    def _host_seqs(self, host: str) -> dict[str, int]:
        try:
            return self._seq[host]
        except KeyError:
            raise ValueError(
                f"Host {host!r} is not one of this writer's hosts {self.hosts}."
            ) from None

    def _open(self, host: str, file_name: str) -> _OpenFile:
        if self._closed:
            raise ValueError("This SpoolWriter is closed; open a new one to write more lines.")
        self._host_seqs(host)
        _check_file_name(file_name)
        path = self.spool_dir / host / file_name
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
        f = _OpenFile(path=path, fd=fd, size=os.fstat(fd).st_size)
        self._files[(host, file_name)] = f
        return f

    def _flush_locked(self) -> None:
        # Profiles first: a user's profile line is produced before that user's first action, so
        # writing all pending profiles before all pending actions keeps that order on disk too.
        dirty = sorted(self._dirty.items(), key=lambda kv: kv[0][1] != contracts.PROFILES_FILE)
        self._dirty.clear()
        self._pending_bytes = 0
        for _, f in dirty:
            data = memoryview(b"".join(f.pending))
            f.pending.clear()
            while data:
                data = data[os.write(f.fd, data) :]

    def _rotate_locked(self, key: tuple[str, str]) -> None:
        self._flush_locked()  # everything written before the rotation belongs to the old file
        f = self._files.pop(key, None)
        if f is not None:
            os.close(f.fd)
        host, name = key
        directory = self.spool_dir / host
        current = directory / name
        if not current.exists():
            return
        # A number is never used twice, not even after its file was shipped and deleted: a
        # reader that keys positions by (inode, path), as Flume's TAILDIR does, would take a new
        # file under an old name that got a recycled inode for the old one and skip its first
        # bytes.
        counter = _ROTATIONS.format(name=name)
        numbers = [
            self._seq[host].get(counter, 0),
            *(_generation(p, name) for p in directory.iterdir()),
        ]
        number = max(n for n in numbers if n is not None) + 1
        self._seq[host][counter] = self._reserved[host][counter] = number
        _save_seq(directory / SEQ_FILE, {**self._seq[host], **self._reserved[host]})
        os.rename(current, directory / f"{name}.{number}")

    def _wait_for_tokens(self) -> None:
        while True:
            now = time.monotonic()
            self._tokens = min(self._cap, self._tokens + (now - self._refilled_at) * self.rate)
            self._refilled_at = now
            if self._tokens >= 0:
                return
            self.flush()  # nothing waits in memory while we sleep
            time.sleep(((self._step - 1.0) - self._tokens) / self.rate)

    def _flush_periodically(self) -> None:
        while not self._stop.wait(_FLUSH_INTERVAL_S):
            if self._dirty:
                with self._lock:
                    if not self._closed:
                        self._flush_locked()

    def _lock_host(self, host: str, host_dir: Path) -> None:
        fd = os.open(host_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise OrderlakeError(
                f"Spool directory {host_dir} is in use by another orderlake producer; wait for it "
                "to finish or write to another spool directory."
            ) from None
        self._lock_fds[host] = fd

    def _release_locks(self) -> None:
        for fd in self._lock_fds.values():
            os.close(fd)  # closing the descriptor releases the flock
        self._lock_fds.clear()


def generations(directory: Path, name: str) -> list[Path]:
    """``<directory>/<name>`` and its rotated files in the order they were written: the oldest
    rotation first, the current file (when it exists) last."""
    rotated = sorted((n, p) for p in directory.iterdir() if (n := _generation(p, name)) is not None)
    current = directory / name
    return [p for _, p in rotated] + ([current] if current.exists() else [])


def _generation(path: Path, name: str) -> int | None:
    """K for a file named ``<name>.K`` (a rotation of ``name``), else None."""
    prefix, _, number = path.name.rpartition(".")
    if prefix == name and number.isdigit() and not number.startswith("0"):
        return int(number)
    return None


def _check_file_name(file_name: str) -> None:
    # Dot files (.seq.json, .lock) are the writer's own; no path separators.
    if not _NAME_RE.fullmatch(file_name):
        raise ValueError(
            f"Spool file name {file_name!r} must be a plain name such as 'actions.log'."
        )


def _load_seq(path: Path) -> dict[str, int]:
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise OrderlakeError(
            f"Cannot read the sequence file {path} ({exc}); restore it or move the spool "
            "directory aside, since numbering from 1 again would repeat event ids."
        ) from None
    if not isinstance(raw, dict) or not all(
        isinstance(k, str) and isinstance(v, int) and v >= 0 for k, v in raw.items()
    ):
        raise OrderlakeError(
            f"The sequence file {path} is malformed (expected {{file name: last number}}); restore "
            "it or move the spool directory aside."
        )
    return raw


def _save_seq(path: Path, seqs: dict[str, int]) -> None:
    # Write-then-rename: a crash leaves either the old or the new numbers, never half a file.
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(seqs, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, path)
