"""Tianchi replay: data_format1 CSV rows -> profiles/actions lines or rejects with a reason."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from orderlake import contracts
from orderlake.errors import OrderlakeError
from orderlake.workload import spool, tianchi
from orderlake.workload.tianchi import (
    SAMPLES_DIR,
    Reject,
    parse_user_info_row,
    parse_user_log_row,
    read_user_info,
    read_user_log,
    replay_tianchi_to_spool,
)

SAMPLES = SAMPLES_DIR
HOSTS = ["host-1", "host-2"]
LOG_HEADER = "user_id,item_id,cat_id,seller_id,brand_id,time_stamp,action_type"
INFO_HEADER = "user_id,age_range,gender"


@pytest.fixture(scope="module")
def samples() -> tuple[Path, Path]:
    info, log = SAMPLES / "user_info_sample.csv", SAMPLES / "user_log_sample.csv"
    assert info.is_file() and log.is_file(), f"the real Tianchi samples belong in {SAMPLES}"
    return info, log


def write_csv(path: Path, header: str, *rows: str) -> Path:
    path.write_text("\n".join([header, *rows]) + "\n")
    return path


def lines(spool_dir: Path, name: str) -> list[dict[str, Any]]:
    return [
        json.loads(line)
        for host in HOSTS
        if (spool_dir / host / name).exists()
        for line in (spool_dir / host / name).read_text().splitlines()
    ]


def log_row(**overrides: str) -> dict[str, str]:
    row = dict(
        user_id="328862",
        item_id="323294",
        cat_id="833",
        seller_id="2882",
        brand_id="2661.0",
        time_stamp="0829",
        action_type="2",
    )
    return row | overrides


# --- the real samples ---------------------------------------------------------------------------
def test_samples_parse_without_rejects(samples: tuple[Path, Path]) -> None:
    info, log = samples
    profiles, actions = list(read_user_info(info)), list(read_user_log(log))
    assert len(profiles) == 3000 and len(actions) == 3000
    assert not [r for r in profiles + actions if isinstance(r, Reject)]
    assert sum(p["age_range"] is None for p in profiles) == 16
    assert sum(p["gender"] is None for p in profiles) == 42
    assert sum(a["brand_id"] is None for a in actions) == 4
    # "0.0,1.0" and "7069.0" became integers.
    assert profiles[0] == {"user_id": 224021, "age_range": 0, "gender": 1}
    assert actions[0] == {
        "event_id": "tianchi:user_log_sample.csv:2",
        "user_id": 422202,
        "item_id": 929057,
        "cat_id": 177,
        "seller_id": 1480,
        "brand_id": 7069,
        "action_type": 0,
        "event_time": actions[0]["event_time"],
    }
    assert actions[0]["event_time"].startswith("2015-06-28T")
    assert [a["event_id"] for a in actions] == [
        f"tianchi:user_log_sample.csv:{n}" for n in range(2, 3002)
    ]
    # The hashed time of day spreads over the whole day.
    assert len({a["event_time"][11:13] for a in actions}) == 24
    assert all(a["event_time"][:4] == "2015" for a in actions)


def test_samples_replay(samples: tuple[Path, Path], tmp_path: Path) -> None:
    info, log = samples
    summary = replay_tianchi_to_spool(tmp_path, user_info=info, user_log=log, rate=0, hosts=HOSTS)
    assert summary["profiles"] == 3000 and summary["actions"] == 3000
    assert summary["rejected"] == {} and summary["rejected_total"] == 0
    assert summary["purchases"] == 183
    # The samples were drawn independently: no purchaser has a profile in user_info.
    assert summary["purchases_without_profile"] == 183
    unknown = summary["purchases_by_age_gender"][contracts.UNKNOWN][contracts.UNKNOWN]
    assert unknown == 183
    assert sum(sum(g.values()) for g in summary["purchases_by_age_gender"].values()) == 183
    assert Path(summary["reject_path"]).read_text() == ""
    assert summary["topics"] == {contracts.TOPIC_ACTIONS: 3000, contracts.TOPIC_PROFILES: 3000}
    for host in HOSTS:
        for name, key in (
            (contracts.ACTIONS_FILE, "actions"),
            (contracts.PROFILES_FILE, "profiles"),
        ):
            written = [json.loads(x) for x in (tmp_path / host / name).read_text().splitlines()]
            assert len(written) == summary["hosts"][host][key]
            assert all(HOSTS[x["user_id"] % 2] == host for x in written)
    profiles = lines(tmp_path, contracts.PROFILES_FILE)
    assert {p["updated_at"] for p in profiles} == {summary["started_at"]}


def test_replaying_twice_gives_identical_actions(
    samples: tuple[Path, Path], tmp_path: Path
) -> None:
    info, log = samples
    for name in ("a", "b"):
        replay_tianchi_to_spool(tmp_path / name, user_info=info, user_log=log, rate=0, hosts=HOSTS)
    for host in HOSTS:
        a = (tmp_path / "a" / host / contracts.ACTIONS_FILE).read_bytes()
        assert a == (tmp_path / "b" / host / contracts.ACTIONS_FILE).read_bytes()
    ids = [x["event_id"] for x in lines(tmp_path / "a", contracts.ACTIONS_FILE)]
    assert len(ids) == len(set(ids)) == 3000


def test_all_profiles_are_written_before_any_action(
    samples: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    order: list[str] = []
    original = spool.SpoolWriter.write

    def spy(self: spool.SpoolWriter, host: str, file_name: str, line: str | bytes) -> None:
        order.append(file_name)
        original(self, host, file_name, line)

    monkeypatch.setattr(spool.SpoolWriter, "write", spy)
    info, log = samples
    replay_tianchi_to_spool(tmp_path, user_info=info, user_log=log, rate=0, hosts=HOSTS)
    assert order == [contracts.PROFILES_FILE] * 3000 + [contracts.ACTIONS_FILE] * 3000


# --- literal rows -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"user_id": "abc"}, tianchi.BAD_ID),
        ({"user_id": "-5"}, tianchi.BAD_ID),
        ({"item_id": "12.5"}, tianchi.BAD_ID),
        ({"brand_id": "-1.0"}, tianchi.BAD_ID),
        ({"seller_id": "99999999999999999999"}, tianchi.BAD_ID),
        ({"action_type": "4"}, tianchi.BAD_ACTION_TYPE),
        ({"action_type": "-1"}, tianchi.BAD_ACTION_TYPE),
        ({"action_type": "click"}, tianchi.BAD_ACTION_TYPE),
        ({"time_stamp": "1301"}, tianchi.BAD_TIME_STAMP),
        ({"time_stamp": "0230"}, tianchi.BAD_TIME_STAMP),
        ({"time_stamp": "0229"}, tianchi.BAD_TIME_STAMP),  # 2015 is no leap year
        ({"time_stamp": "28"}, tianchi.BAD_TIME_STAMP),
        ({"time_stamp": "20150628"}, tianchi.BAD_TIME_STAMP),
        ({"time_stamp": "06-28"}, tianchi.BAD_TIME_STAMP),
        ({"user_id": ""}, tianchi.MISSING_FIELD),
        ({"item_id": " "}, tianchi.MISSING_FIELD),
        ({"time_stamp": ""}, tianchi.MISSING_FIELD),
        ({"action_type": ""}, tianchi.MISSING_FIELD),
    ],
)
def test_user_log_rejects(overrides: dict[str, str], reason: str) -> None:
    row = log_row(**overrides)
    got = parse_user_log_row(row, 7, "user_log_format1.csv")
    assert isinstance(got, Reject)
    assert (got.line_no, got.reason) == (7, reason)
    assert got.detail and got.raw == ",".join(row.values())


@pytest.mark.parametrize(
    ("row", "reason"),
    [
        ({"user_id": "x1", "age_range": "1", "gender": "0"}, tianchi.BAD_ID),
        ({"user_id": "", "age_range": "1", "gender": "0"}, tianchi.MISSING_FIELD),
        ({"user_id": "1", "age_range": "9", "gender": "0"}, tianchi.BAD_AGE_RANGE),
        ({"user_id": "1", "age_range": "2.5", "gender": "0"}, tianchi.BAD_AGE_RANGE),
        ({"user_id": "1", "age_range": "1", "gender": "3.0"}, tianchi.BAD_GENDER),
        ({"user_id": "1", "age_range": "1", "gender": "f"}, tianchi.BAD_GENDER),
        # csv.DictReader shapes: a surplus field under None, a missing one as None.
        (
            {"user_id": "1", "age_range": "1", "gender": "0", None: ["x"]},
            tianchi.WRONG_COLUMN_COUNT,
        ),
        ({"user_id": "1", "age_range": "1", "gender": None}, tianchi.WRONG_COLUMN_COUNT),
    ],
)
def test_user_info_rejects(row: dict[Any, Any], reason: str) -> None:
    got = parse_user_info_row(row, 3)
    assert isinstance(got, Reject) and got.reason == reason and got.line_no == 3


def test_quirks_are_accepted() -> None:
    for stamp in ("0628", "628", "628.0", " 0628 "):
        got = parse_user_log_row(log_row(time_stamp=stamp), 2, "f.csv")
        assert not isinstance(got, Reject), stamp
        assert got["event_time"].startswith("2015-06-28T")
    got = parse_user_log_row(log_row(brand_id="", action_type="2.0", user_id="0"), 2, "f.csv")
    assert not isinstance(got, Reject)
    assert (got["brand_id"], got["action_type"], got["user_id"]) == (None, 2, 0)
    assert parse_user_info_row({"user_id": "5.0", "age_range": "", "gender": "2.0"}, 2) == {
        "user_id": 5,
        "age_range": None,
        "gender": 2,
    }


def test_event_id_and_time_are_a_function_of_file_and_line() -> None:
    a = parse_user_log_row(log_row(), 10, "user_log_format1.csv")
    b = parse_user_log_row(log_row(item_id="1"), 10, "user_log_format1.csv")
    c = parse_user_log_row(log_row(), 11, "user_log_format1.csv")
    assert isinstance(a, dict) and isinstance(b, dict) and isinstance(c, dict)
    assert a["event_id"] == b["event_id"] == "tianchi:user_log_format1.csv:10"
    assert a["event_time"] == b["event_time"] != c["event_time"]
    assert a["event_time"][:10] == "2015-08-29"


# --- replay of small literal files --------------------------------------------------------------
def test_replay_counts_rejects_and_purchases(tmp_path: Path) -> None:
    info = write_csv(
        tmp_path / "user_info.csv",
        INFO_HEADER,
        "10,3.0,0.0",  # 25-29 female
        "11,,",  # unknown/unknown, but a profile exists
        "12,10,1",  # rejected: age_range 10
        "13,1",  # rejected: two fields
    )
    log = write_csv(
        tmp_path / "user_log.csv",
        LOG_HEADER,
        "10,1,1,1,1.0,1111,2",
        "10,1,1,1,,1111,0",
        "11,2,2,2,2,628,2",
        "12,3,3,3,3,0701,2",  # its profile was rejected: counts as without profile
        "99,4,4,4,4,0701,2",  # no profile at all
        "10,5,5,5,5,1301,2",  # rejected: month 13
        "10,5,5,5,5,1111,2,extra",  # rejected: eight fields
    )
    rejects_file = tmp_path / "out" / "rejects.jsonl"
    summary = replay_tianchi_to_spool(
        tmp_path / "spool",
        user_info=info,
        user_log=log,
        rate=0,
        hosts=HOSTS,
        reject_path=rejects_file,
    )
    assert summary["profiles"] == 2 and summary["actions"] == 5
    assert summary["rejected"] == {
        "bad_age_range": 1,
        "bad_time_stamp": 1,
        "wrong_column_count": 2,
    }
    assert summary["purchases"] == 4 and summary["purchases_without_profile"] == 2
    by = summary["purchases_by_age_gender"]
    assert by["25-29"]["female"] == 1
    assert by[contracts.UNKNOWN][contracts.UNKNOWN] == 3
    assert summary["reject_path"] == str(rejects_file)

    rejects = [json.loads(x) for x in rejects_file.read_text().splitlines()]
    assert [(r["file"], r["line"], r["reason"]) for r in rejects] == [
        ("user_info.csv", 4, "bad_age_range"),
        ("user_info.csv", 5, "wrong_column_count"),
        ("user_log.csv", 7, "bad_time_stamp"),
        ("user_log.csv", 8, "wrong_column_count"),
    ]
    assert rejects[1]["raw"] == "13,1" and all(r["detail"] for r in rejects)
    ids = Counter(a["event_id"].rsplit(":", 1)[1] for a in lines(tmp_path / "spool", "actions.log"))
    assert sorted(ids, key=int) == ["2", "3", "4", "5", "6"]


def test_default_reject_path_is_under_the_spool(tmp_path: Path) -> None:
    info = write_csv(tmp_path / "i.csv", INFO_HEADER, "1,1,1")
    log = write_csv(tmp_path / "l.csv", LOG_HEADER, "1,1,1,1,1,1111,0")
    summary = replay_tianchi_to_spool(
        tmp_path / "spool", user_info=info, user_log=log, rate=0, hosts=HOSTS
    )
    path = Path(summary["reject_path"])
    assert path.parent == tmp_path / "spool" / "rejects" and path.name.startswith("tianchi-")
    assert path.suffix == ".jsonl" and path.exists()


def test_wrong_header_or_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    info = write_csv(tmp_path / "user_info.csv", INFO_HEADER, "1,1,1")
    log = write_csv(tmp_path / "user_log.csv", LOG_HEADER, "1,1,1,1,1,1111,0")
    spool_dir = tmp_path / "spool"
    with pytest.raises(OrderlakeError, match=r"is not a Tianchi user_info file.*header"):
        # The files swapped: refused before anything is written.
        replay_tianchi_to_spool(spool_dir, user_info=log, user_log=info, rate=0, hosts=HOSTS)
    with pytest.raises(OrderlakeError, match="does not exist"):
        replay_tianchi_to_spool(
            spool_dir, user_info=info, user_log=tmp_path / "nope.csv", rate=0, hosts=HOSTS
        )
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(OrderlakeError, match="empty"):
        list(read_user_log(empty))
    assert not spool_dir.exists()


def test_header_with_bom_and_crlf_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "user_info.csv"
    path.write_bytes(b"\xef\xbb\xbfuser_id,age_range,gender\r\n7,2.0,1.0\r\n\r\n8,,\r\n")
    assert list(read_user_info(path)) == [
        {"user_id": 7, "age_range": 2, "gender": 1},
        {"user_id": 8, "age_range": None, "gender": None},
    ]
