"""Real Tianchi data_format1 CSVs -> <spool>/<host>/profiles.log and actions.log; rejects -> JSONL.

Replays ``user_info`` (user_id, age_range, gender) and ``user_log`` (user_id, item_id, cat_id,
seller_id, brand_id, time_stamp, action_type) row by row, so files of any size stream through in
constant memory (apart from one small entry per user_info user, to report purchases without a
profile). All profiles are written before the first action, so profiles precede actions.

The real files' quirks are accepted: codes re-saved as floats (``6.0``, ``7069.0``), empty fields
for null, ``mmdd`` time stamps with (``0628``) or without (``628``) the leading zero. A row that
cannot be read is never dropped silently: it becomes a ``Reject`` with a snake_case reason code and
lands in a JSON-lines reject file.

Ids are deterministic: ``event_id = tianchi:<user_log file name>:<line number>`` (line 1 is the
header) and the time of day is a hash of the event id, so replaying a file twice yields the same
actions.

Example::

    summary = replay_tianchi_to_spool(Path("spool"), user_info=Path("user_info_format1.csv"),
                                      user_log=Path("user_log_format1.csv"), rate=0,
                                      hosts=["host-1", "host-2"])
"""

from __future__ import annotations

import csv
import hashlib
import json
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import IO, Any, Final

from orderlake import contracts
from orderlake.errors import OrderlakeError, UsageError
from orderlake.settings import PROJECT_ROOT
from orderlake.workload.generator import event_time_iso, utc_now_iso
from orderlake.workload.spool import SpoolWriter

USER_INFO_HEADER: Final = ("user_id", "age_range", "gender")
USER_LOG_HEADER: Final = (
    "user_id",
    "item_id",
    "cat_id",
    "seller_id",
    "brand_id",
    "time_stamp",
    "action_type",
)

# Reject reason codes.
WRONG_COLUMN_COUNT: Final = "wrong_column_count"
MISSING_FIELD: Final = "missing_field"
BAD_ID: Final = "bad_id"
BAD_ACTION_TYPE: Final = "bad_action_type"
BAD_AGE_RANGE: Final = "bad_age_range"
BAD_GENDER: Final = "bad_gender"
BAD_TIME_STAMP: Final = "bad_time_stamp"
MALFORMED_CSV: Final = "malformed_csv"  # the csv module gave up (e.g. a field over its size limit)
REJECT_REASONS: Final = (
    WRONG_COLUMN_COUNT,
    MISSING_FIELD,
    BAD_ID,
    BAD_ACTION_TYPE,
    BAD_AGE_RANGE,
    BAD_GENDER,
    BAD_TIME_STAMP,
    MALFORMED_CSV,
)

# An integer, optionally written as a float with a zero fraction (pandas re-saved "6" as "6.0").
# Real 3,000-row samples of both files, with their quirks (see the README beside them).
SAMPLES_DIR: Final = PROJECT_ROOT / "data" / "tianchi_samples"
SAMPLE_USER_INFO: Final = SAMPLES_DIR / "user_info_sample.csv"
SAMPLE_USER_LOG: Final = SAMPLES_DIR / "user_log_sample.csv"

_INT_RE = re.compile(r"\s*(-?[0-9]+)(?:\.0*)?\s*")
_MS_PER_DAY = 86_400_000
_MAX_ID = 2**63 - 1  # ids must fit the tables' 64-bit integer columns


@dataclass(frozen=True)
class Reject:
    """A CSV row that could not be read: where, why (a reason code), details, the raw text."""

    line_no: int
    reason: str
    detail: str
    raw: str


class _RowError(Exception):
    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


# --- pure row parsers ---------------------------------------------------------------------------
def _raw(row: dict[Any, Any]) -> str:
    values = [v for k, v in row.items() if k is not None]
    values += row.get(None) or []  # csv.DictReader puts surplus fields under the key None
    return ",".join("" if v is None else str(v) for v in values)


def _check_shape(row: dict[Any, Any], header: tuple[str, ...]) -> None:
    # csv.DictReader marks a short row with None values and a long one with a None key.
    if None in row or any(row.get(name) is None for name in header):
        got = sum(v is not None for k, v in row.items() if k is not None) + len(row.get(None) or [])
        raise _RowError(WRONG_COLUMN_COUNT, f"expected {len(header)} fields, got {got}")


def _int_or_none(row: dict[str, str], name: str, reason: str) -> int | None:
    text = row[name]
    if text == "" or text.isspace():
        return None
    match = _INT_RE.fullmatch(text)
    if match is None:
        raise _RowError(reason, f"{name} {text!r} is not an integer")
    return int(match[1])


def _required_id(row: dict[str, str], name: str) -> int:
    value = _int_or_none(row, name, BAD_ID)
    if value is None:
        raise _RowError(MISSING_FIELD, f"{name} is empty")
    if value < 0:
        raise _RowError(BAD_ID, f"{name} {row[name]!r} is negative")
    if value > _MAX_ID:
        raise _RowError(BAD_ID, f"{name} {row[name]!r} is too large")
    return value


def _code(row: dict[str, str], name: str, allowed: range, reason: str) -> int | None:
    value = _int_or_none(row, name, reason)
    if value is not None and value not in allowed:
        raise _RowError(
            reason, f"{name} {row[name]!r} is not a code in {allowed.start}..{allowed.stop - 1}"
        )
    return value


def parse_time_stamp(text: str) -> date:
    """Parse a Tianchi ``mmdd`` time stamp (``0628``, ``628`` or ``628.0``) as a date in 2015.

    >>> parse_time_stamp("0628"), parse_time_stamp("628")
    (datetime.date(2015, 6, 28), datetime.date(2015, 6, 28))
    """
    match = _INT_RE.fullmatch(text)
    if match is None or len(match[1].lstrip("-")) > 4:
        raise ValueError(f"time_stamp {text!r} is not an mmdd value")
    month, day = divmod(int(match[1]), 100)
    try:
        return date(contracts.TIANCHI_YEAR, month, day)
    except ValueError:
        raise ValueError(f"time_stamp {text!r} is not a valid mmdd date") from None


def parse_user_info_row(row: dict[str, str], line_no: int) -> dict[str, Any] | Reject:
    """Read one user_info row as a profile (without ``updated_at``) or a ``Reject``.

    >>> parse_user_info_row({"user_id": "405848", "age_range": "6.0", "gender": ""}, 2)
    {'user_id': 405848, 'age_range': 6, 'gender': None}
    """
    try:
        _check_shape(row, USER_INFO_HEADER)
        return {
            "user_id": _required_id(row, "user_id"),
            "age_range": _code(row, "age_range", range(0, 9), BAD_AGE_RANGE),
            "gender": _code(row, "gender", range(0, 3), BAD_GENDER),
        }
    except _RowError as err:
        return Reject(line_no, err.reason, err.detail, _raw(row))


def parse_user_log_row(
    row: dict[str, str], line_no: int, file_name: str
) -> dict[str, Any] | Reject:
    """Read one user_log row as an action (DESIGN.md section 3) or a ``Reject``.

    ``event_id`` is ``tianchi:<file_name>:<line_no>``; the time of day is a hash of it, spread
    over the whole day, so the same row always gets the same id and time.
    """
    try:
        _check_shape(row, USER_LOG_HEADER)
        for name in ("user_id", "item_id", "cat_id", "seller_id", "time_stamp", "action_type"):
            if row[name] == "" or row[name].isspace():
                raise _RowError(MISSING_FIELD, f"{name} is empty")
        user_id = _required_id(row, "user_id")
        item_id = _required_id(row, "item_id")
        cat_id = _required_id(row, "cat_id")
        seller_id = _required_id(row, "seller_id")
        brand_id = None if row["brand_id"].strip() == "" else _required_id(row, "brand_id")
        action_type = _code(row, "action_type", range(0, 4), BAD_ACTION_TYPE)
        try:
            day = parse_time_stamp(row["time_stamp"])
        except ValueError as exc:
            raise _RowError(BAD_TIME_STAMP, str(exc)) from None
    except _RowError as err:
        return Reject(line_no, err.reason, err.detail, _raw(row))
    event_id = f"tianchi:{file_name}:{line_no}"
    digest = hashlib.blake2b(event_id.encode("utf-8"), digest_size=8).digest()
    return {
        "event_id": event_id,
        "user_id": user_id,
        "item_id": item_id,
        "cat_id": cat_id,
        "seller_id": seller_id,
        "brand_id": brand_id,
        "action_type": action_type,
        "event_time": event_time_iso(day, int.from_bytes(digest, "big") % _MS_PER_DAY),
    }


# --- streaming readers --------------------------------------------------------------------------
def _open_csv(path: Path, header: tuple[str, ...], kind: str) -> tuple[IO[str], Any]:
    """Open a Tianchi CSV and check its header; the error says what to do instead."""
    hint = f"pass the Tianchi data_format1 {kind}_format1.csv file"
    path = Path(path)
    if not path.is_file():
        raise OrderlakeError(f"The Tianchi {kind} file {path} does not exist; {hint}.")
    # utf-8-sig: tolerate a BOM; surrogateescape: a stray byte becomes a rejected row, not a crash.
    handle = path.open(encoding="utf-8-sig", errors="surrogateescape", newline="")
    reader = csv.reader(handle)
    got = next(reader, None)
    if got is None or tuple(name.strip().lower() for name in got) != header:
        handle.close()
        found = "it is empty" if got is None else f"its header is {','.join(got)!r}"
        raise OrderlakeError(
            f"{path} is not a Tianchi {kind} file: {found}, expected {','.join(header)!r}; {hint}."
        )
    return handle, reader


def _rows(reader: Any, header: tuple[str, ...]) -> Iterator[tuple[int, dict[str, str] | Reject]]:
    while True:
        try:
            fields = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            # The reader resumes at the next line; the broken one is kept as a reject.
            yield reader.line_num, Reject(reader.line_num, MALFORMED_CSV, str(exc), "")
            continue
        line_no = reader.line_num  # physical line of the row's end; the header is line 1
        if not fields:
            continue  # a blank line carries no row
        if len(fields) != len(header):
            yield (
                line_no,
                Reject(
                    line_no,
                    WRONG_COLUMN_COUNT,
                    f"expected {len(header)} fields, got {len(fields)}",
                    ",".join(fields),
                ),
            )
        else:
            yield line_no, dict(zip(header, fields, strict=True))


def read_user_info(path: Path) -> Iterator[dict[str, Any] | Reject]:
    """Stream a user_info CSV as profiles (without ``updated_at``) and rejects."""
    handle, reader = _open_csv(path, USER_INFO_HEADER, "user_info")
    with handle:
        for line_no, row in _rows(reader, USER_INFO_HEADER):
            yield row if isinstance(row, Reject) else parse_user_info_row(row, line_no)


def read_user_log(path: Path) -> Iterator[dict[str, Any] | Reject]:
    """Stream a user_log CSV as actions and rejects."""
    handle, reader = _open_csv(path, USER_LOG_HEADER, "user_log")
    name = Path(path).name
    with handle:
        for line_no, row in _rows(reader, USER_LOG_HEADER):
            yield row if isinstance(row, Reject) else parse_user_log_row(row, line_no, name)


# --- replay -------------------------------------------------------------------------------------
def replay_tianchi_to_spool(
    spool_dir: Path,
    *,
    user_info: Path,
    user_log: Path,
    rate: float,
    hosts: list[str],
    reject_path: Path | None = None,
) -> dict[str, Any]:
    """Replay the user_info then the user_log file into the spool; return a summary.

    Each line goes to its user's home host ``hosts[user_id % len(hosts)]``. Profiles carry the
    replay's start time as ``updated_at``. Rejects go as JSON lines (file, line, reason, detail,
    raw) to ``reject_path`` (default ``<spool_dir>/rejects/tianchi-<UTC stamp>.jsonl``, always
    created). Purchases by users absent from user_info count as unknown/unknown and are reported
    as ``purchases_without_profile``.
    """
    if not hosts:
        raise UsageError("The replay needs at least one host; pass e.g. ['host-1'].")
    started = datetime.now(UTC)
    # One timestamp for the whole replay: every profile of this replay is "as of" its start.
    updated_at = started.strftime("%Y-%m-%dT%H:%M:%S.") + f"{started.microsecond // 1000:03d}Z"
    spool_dir = Path(spool_dir)
    # Check both files before writing anything: a bad user_log must not leave profiles behind.
    for path, header, kind in (
        (user_info, USER_INFO_HEADER, "user_info"),
        (user_log, USER_LOG_HEADER, "user_log"),
    ):
        handle, _ = _open_csv(path, header, kind)
        handle.close()
    if reject_path is None:
        reject_path = spool_dir / "rejects" / f"tianchi-{started.strftime('%Y%m%dT%H%M%S')}.jsonl"
    reject_path = Path(reject_path)
    reject_path.parent.mkdir(parents=True, exist_ok=True)

    n_hosts = len(hosts)
    host_counts = {h: {"actions": 0, "profiles": 0} for h in hosts}
    rejected: Counter[str] = Counter()
    action_types = [0, 0, 0, 0]
    bracket_index = {b: i for i, b in enumerate(contracts.AGE_BRACKETS)}
    gender_index = {g: i for i, g in enumerate(contracts.GENDERS)}
    n_genders = len(contracts.GENDERS)
    unknown_cell = bracket_index[contracts.UNKNOWN] * n_genders + gender_index[contracts.UNKNOWN]
    # user_id -> age/gender cell of the user's latest profile; one small int per user (424k users
    # in the full file), needed to place purchases and to spot those without a profile.
    cell_of: dict[int, int] = {}
    purchases = [0] * (len(contracts.AGE_BRACKETS) * n_genders)
    without_profile = 0
    encode = json.JSONEncoder(separators=(",", ":")).encode

    with (
        SpoolWriter(spool_dir, list(hosts), rate=rate) as writer,
        reject_path.open("w", encoding="utf-8") as rejects,
    ):

        def reject(file: Path, item: Reject) -> None:
            rejected[item.reason] += 1
            record = {"file": Path(file).name, "line": item.line_no, **asdict(item)}
            del record["line_no"]
            rejects.write(json.dumps(record) + "\n")

        for item in read_user_info(user_info):
            if isinstance(item, Reject):
                reject(user_info, item)
                continue
            user_id = item["user_id"]
            item["updated_at"] = updated_at
            host = hosts[user_id % n_hosts]
            writer.write(host, contracts.PROFILES_FILE, encode(item))
            host_counts[host]["profiles"] += 1
            cell_of[user_id] = (
                bracket_index[contracts.age_bracket(item["age_range"])] * n_genders
                + gender_index[contracts.gender_label(item["gender"])]
            )

        for item in read_user_log(user_log):
            if isinstance(item, Reject):
                reject(user_log, item)
                continue
            user_id = item["user_id"]
            host = hosts[user_id % n_hosts]
            writer.write(host, contracts.ACTIONS_FILE, encode(item))
            host_counts[host]["actions"] += 1
            action_types[item["action_type"]] += 1
            if item["action_type"] == contracts.ACTION_PURCHASE:
                cell = cell_of.get(user_id)
                if cell is None:
                    without_profile += 1
                    cell = unknown_cell
                purchases[cell] += 1

    profiles = sum(c["profiles"] for c in host_counts.values())
    actions = sum(c["actions"] for c in host_counts.values())
    return {
        "run_id": f"tianchi-{started.strftime('%Y%m%dT%H%M%S')}",
        "user_info": str(user_info),
        "user_log": str(user_log),
        "spool_dir": str(spool_dir),
        "started_at": updated_at,
        "finished_at": utc_now_iso(),
        "profiles": profiles,
        "actions": actions,
        "rejected": dict(sorted(rejected.items())),
        "rejected_total": sum(rejected.values()),
        "purchases": action_types[contracts.ACTION_PURCHASE],
        "purchases_without_profile": without_profile,
        "reject_path": str(reject_path),
        "hosts": host_counts,
        "topics": {contracts.TOPIC_ACTIONS: actions, contracts.TOPIC_PROFILES: profiles},
        "action_types": {str(t): n for t, n in enumerate(action_types)},
        "purchases_by_age_gender": {
            bracket: {
                gender: purchases[bi * n_genders + gi]
                for gi, gender in enumerate(contracts.GENDERS)
            }
            for bi, bracket in enumerate(contracts.AGE_BRACKETS)
        },
    }
