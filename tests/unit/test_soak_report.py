"""The soak report: a case that raised is shown as not exact with its error, never dropped."""

from bench.soak import failed_case, render


def doc_with(*cases: dict) -> dict:
    return {
        "measured_at": "2026-12-05T18:30:00+00:00", "commit": "abc1234",
        "machine": {"cpu_count": 2}, "load_before": 1.0, "load_after": 2.0, "scale": 1.0,
        "minutes": 3.5, "cases": list(cases),
    }  # fmt: skip


def test_exact_case_row_shows_counts_reasons_and_recovery():
    row = {
        "case": "malformed", "faults_injected": 17, "events_sent": 1200,
        "purchases_expected": 300, "speed_lost": 0, "gold_lost": 0, "speed_doubled": 0,
        "gold_doubled": 0, "quarantined": {"batch": {"bad_json": 5, "empty": 2}},
        "recovery_s": [4.0, 10.0, 6.0], "notes": [], "exact": True,
    }  # fmt: skip
    text = render(doc_with(row))
    line = next(x for x in text.splitlines() if x.startswith("| malformed"))
    assert "| 1,200 | 300 | 0 / 0 | 0 / 0 | bad_json 5, empty 2 | 6, 10 | yes |" in line


def test_raised_case_is_not_exact_and_names_the_error():
    row = failed_case("rotations", 100, TimeoutError("speed tables not exact after 600 s"))
    row["seconds"] = 12
    text = render(doc_with(row))
    assert "| rotations | 0 | 0 | 0 | 0 / 0 | 0 / 0 | - | - | NO |" in text
    assert "- rotations: raised TimeoutError: speed tables not exact after 600 s" in text


def test_each_row_shows_what_its_case_added_to_the_lakes_quarantine():
    """One lake for every case: the quarantine grows; a row shows only its own case's rows."""
    first = failed_case("malformed", 1, RuntimeError("x")) | {
        "quarantined": {"batch": {"not_json": 4, "empty_record": 2}}
    }
    second = failed_case("rotations", 1, RuntimeError("y")) | {
        "quarantined": {"batch": {"not_json": 8, "empty_record": 2}}  # 4 delivered again
    }
    third = failed_case("vacuum_guard", 1, RuntimeError("z")) | {
        "quarantined": {"batch": {"not_json": 8, "empty_record": 2}}
    }
    rows = [x for x in render(doc_with(first, second, third)).splitlines() if x.startswith("| ")]
    assert "| empty_record 2, not_json 4 |" in rows[1]
    assert "| not_json 4 |" in rows[2]
    assert "| - |" in rows[3]
