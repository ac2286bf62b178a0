"""Batch entry point: re-read a bounded range of one topic, rewrite what it affects.
By hand (the Airflow task runs the same job):

    .venv/bin/python batch/replay.py --topic T --from TIME|OFFSETS --to TIME|OFFSETS \
        [--layers bronze,silver,gold]

Same as `orderlake replay`; the job is orderlake.jobs.replay, on the warm Spark.
"""

import sys

from orderlake.jobs.replay import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
