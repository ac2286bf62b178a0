"""Batch entry point: re-read a bounded range of one topic, rewrite what it affects.
By hand or from an Airflow task:

    .venv/bin/python batch/replay.py --topic T --from TIME|OFFSETS --to TIME|OFFSETS \
        [--layers bronze,silver,gold]

Same as `orderlake replay`; the work is done by orderlake.jobs.replay.
"""

import sys

from orderlake.cli import main

if __name__ == "__main__":
    sys.exit(main(["replay", *sys.argv[1:]]))
