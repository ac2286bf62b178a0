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
