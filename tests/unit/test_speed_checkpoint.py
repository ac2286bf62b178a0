"""The speed layer refuses a checkpoint of the older query shape with one clear sentence."""

from __future__ import annotations

import json

import pytest

from orderlake.errors import OrderlakeError
from orderlake.jobs import speed


def write_offsets(checkpoint, batch_id: int, sources: list[dict]) -> None:
    offsets = checkpoint / "offsets"
    offsets.mkdir(parents=True, exist_ok=True)
    lines = ["v1", json.dumps({"batchWatermarkMs": 0}), *map(json.dumps, sources)]
    (offsets / str(batch_id)).write_text("\n".join(lines))


def test_a_new_checkpoint_is_accepted(tmp_path):
    speed.check_checkpoint(tmp_path / "checkpoint")  # nothing written yet


def test_a_checkpoint_with_one_source_per_topic_is_accepted(tmp_path):
    checkpoint = tmp_path / "checkpoint"
    write_offsets(checkpoint, 0, [{"tmall.user_actions": {"0": 5}}, {"tmall.user_profiles": {}}])
    speed.check_checkpoint(checkpoint)


def test_a_checkpoint_with_one_source_for_both_topics_is_refused(tmp_path):
    checkpoint = tmp_path / "checkpoint"
    both = {"tmall.user_actions": {"0": 5}, "tmall.user_profiles": {"0": 1}}
    write_offsets(checkpoint, 0, [both])
    write_offsets(checkpoint, 1, [both])
    (checkpoint / "offsets" / ".1.crc").write_text("")  # Spark's checksum files are skipped
    with pytest.raises(OrderlakeError, match=r"holds 1 Kafka source\(s\).*remove the checkpoint"):
        speed.check_checkpoint(checkpoint)
