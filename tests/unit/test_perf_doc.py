"""docs/PERFORMANCE.md is generated from bench/results and stays current; its readers pick the
right figures from a benchmark's JSON."""

from __future__ import annotations

import json

import pytest

from bench import perf_doc


def test_the_checked_in_document_is_what_the_results_generate():
    assert perf_doc.DOC.read_text() == perf_doc.render(), "run `make perf-doc`"


def test_regenerating_from_the_same_results_gives_no_diff(tmp_path):
    (tmp_path / "airflow.json").write_text(json.dumps(AIRFLOW))
    assert perf_doc.render(tmp_path) == perf_doc.render(tmp_path)


AIRFLOW = {
    "measured_at": "2026-12-05T10:00:00+00:00",
    "commit": "abcdef1234",
    "machine": {"cpu_count": 2, "cpu_model": "Xeon", "ram_total_gib": 23.5},
    "load_before": [0.5, 0.25, 0.125],
    "events": 50000,
    "rounds": [
        {"bronze_asset_to_gold_s": 30.0, "durations_s": {"load_bronze": 5.0}},
        {"bronze_asset_to_gold_s": 20.0, "durations_s": {"load_bronze": 7.0}},
        {"bronze_asset_to_gold_s": 25.0, "durations_s": {"load_bronze": 6.0}},
    ],
}


def test_a_table_carries_its_source_machine_load_and_medians(tmp_path):
    (tmp_path / "airflow.json").write_text(json.dumps(AIRFLOW))
    text = perf_doc.render(tmp_path)
    assert "bench/results/airflow.json" in text
    assert "Measured 2026-12-05T10:00:00+00:00 at abcdef1 on 2 cores" in text
    assert "load average before: 0.5/0.2/0.1" in text
    assert "| bronze asset -> gold updated | 25.0 |" in text
    assert "| task load_bronze | 6.0 |" in text


def test_a_results_file_of_another_shape_is_one_sentence(tmp_path):
    (tmp_path / "airflow.json").write_text(json.dumps({"rounds": "not a list"}))
    with pytest.raises(SystemExit, match="does not have the shape bench.perf_doc reads"):
        perf_doc.render(tmp_path)


def test_a_scale_run_stopped_early_is_written_from_the_lines_it_printed(tmp_path):
    from bench import scale

    run = {
        "events": 1000, "profiles": 10, "end_to_end_s": 9.0, "batch_s": 4.0,
        "seconds_from_first_line": {"generate": 1.0, "kafka": 3.0, "speed": 4.0, "batch": 9.0},
        "rates": {"end_to_end_events_per_s": 111}, "reconcile_exact": True,
        "reconcile_failed": [], "peak_rss_gib": 1.0, "peak_disk_mib": {"kafka": 1},
    }  # fmt: skip
    log = tmp_path / "scale.log"
    bigger = {**run, "events": 5000, "end_to_end_s": 40.0}
    log.write_text(f"starting\n{json.dumps(bigger)}\nnoise\n{json.dumps(run)}\n")
    assert [r["events"] for r in scale.logged_runs(log)] == [5000, 1000]
    code = scale.main(["--from-log", str(log), "--started", "2026-12-06T11:14:05+00:00",
                       "--out", str(tmp_path)])  # fmt: skip
    assert code == 1  # not every volume asked for was measured
    doc = json.loads((tmp_path / "scale.json").read_text())
    assert [r["events"] for r in doc["runs"]] == [1000, 5000]
    assert doc["timestamp"] == "2026-12-06T11:14:05Z" and doc["load_average_before"] is None
    assert "stopped early" in (tmp_path / "scale.md").read_text()


def test_a_scale_run_of_one_volume_keeps_the_others_with_their_own_date_and_commit(tmp_path):
    from bench import scale

    def run(events: int, seconds: float) -> dict:
        return {
            "events": events, "profiles": 10, "end_to_end_s": seconds, "batch_s": seconds / 2,
            "seconds_from_first_line": {"generate": 1.0, "kafka": 3.0, "speed": 4.0,
                                        "batch": seconds},
            "rates": {"end_to_end_events_per_s": 111}, "reconcile_exact": True,
            "reconcile_failed": [], "peak_rss_gib": 1.0, "peak_disk_mib": {"kafka": 1},
        }  # fmt: skip

    first = tmp_path / "first.log"
    first.write_text("\n".join(json.dumps(run(n, n / 100)) for n in (1000, 5000)) + "\n")
    scale.main(["--from-log", str(first), "--started", "2026-12-06T11:00:00+00:00",
                "--out", str(tmp_path)])  # fmt: skip
    second = tmp_path / "second.log"
    second.write_text(json.dumps(run(2000, 99.0)) + "\n")
    scale.main(["--from-log", str(second), "--started", "2026-12-07T09:00:00+00:00",
                "--out", str(tmp_path), "--keep-others"])  # fmt: skip
    doc = json.loads((tmp_path / "scale.json").read_text())
    assert [r["events"] for r in doc["runs"]] == [1000, 2000, 5000]
    assert [r["measured"]["timestamp"][:10] for r in doc["runs"]] == [
        "2026-12-06", "2026-12-07", "2026-12-06"
    ]  # fmt: skip
    assert doc["growth"]["end_to_end_s"] is not None  # fitted over all three
    text = (tmp_path / "scale.md").read_text()
    assert "Measured in separate runs" in text and "- 2,000 events: 2026-12-07T09:00:00Z" in text
    # measuring a kept volume again replaces it
    third = tmp_path / "third.log"
    third.write_text(json.dumps(run(5000, 7.0)) + "\n")
    scale.main(["--from-log", str(third), "--out", str(tmp_path), "--keep-others"])
    doc = json.loads((tmp_path / "scale.json").read_text())
    assert [(r["events"], r["end_to_end_s"]) for r in doc["runs"]] == [
        (1000, 10.0), (2000, 99.0), (5000, 7.0)
    ]  # fmt: skip
