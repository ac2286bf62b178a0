"""Secrets on disk: written 0600 from the start, and a damaged secrets file is an error."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from orderlake.errors import OrderlakeError
from orderlake.private import is_private, write_private
from orderlake.settings import Settings
from orderlake.stack import airflow


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_private_file_is_0600_whatever_the_umask_and_the_old_file(tmp_path):
    path = tmp_path / "dir" / "secret.json"
    path.parent.mkdir()
    path.write_text("old")
    path.chmod(0o644)
    old_umask = os.umask(0)
    try:
        write_private(path, "new")
    finally:
        os.umask(old_umask)
    assert path.read_text() == "new" and mode(path) == 0o600
    assert [p.name for p in path.parent.iterdir()] == ["secret.json"]  # no temporary left


def test_airflow_secrets_are_generated_once_private_and_never_regenerated(tmp_path):
    settings = Settings(home=tmp_path / "home")
    first = airflow.load_secrets(settings)
    path = airflow.secrets_file(settings)
    assert mode(path) == 0o600
    assert airflow.load_secrets(settings) == first
    path.chmod(0o644)  # restored from a backup with a wider mode
    assert airflow.load_secrets(settings) == first and is_private(path)
    torn = json.dumps(first)[:40]
    path.write_text(torn)
    with pytest.raises(OrderlakeError, match="cannot be read .* restore it"):
        airflow.load_secrets(settings)
    assert path.read_text() == torn  # left for the user to restore, not replaced
    path.write_text(json.dumps({"fernet_key": first["fernet_key"]}))
    with pytest.raises(OrderlakeError, match="expected the keys"):
        airflow.load_secrets(settings)
