"""Free space of the data directories: measured on the real filesystem, warned below the bound."""

from __future__ import annotations

import shutil

from orderlake.cli import warnings
from orderlake.settings import Settings
from orderlake.stack import disk


def test_free_space_of_a_directory_and_of_one_not_created_yet(tmp_path):
    free = shutil.disk_usage(tmp_path).free / disk.GIB
    roomy = Settings(home=tmp_path / "home", min_free_gb=0)
    found = disk.free_space(roomy, tmp_path / "home" / "kafka")  # not created yet
    assert abs(found["free_gb"] - free) < 1 and found["warning"] is None
    tight = Settings(home=tmp_path / "home", min_free_gb=free + 100)
    warned = disk.free_space(tight, tmp_path)["warning"]
    assert warned.startswith(f"{tmp_path} has ") and "ORDERLAKE_MIN_FREE_GB" in warned


def test_status_says_each_warning_once():
    low = {"path": "/d", "free_gb": 0.1, "warning": "low"}
    state = {
        "kafka": {"disk": [low], "bronze_retention": {"warnings": ["late"]}},
        "spark": {"disk": [low]},
        "dashboard": {},
    }
    assert warnings(state) == ["low", "late"]
