"""Batch layer entry point: gold. Runnable by hand (the Airflow task runs the same job):

    .venv/bin/python batch/gold.py [--full] [--close-through YYYY-MM-DD]

Same as `orderlake batch gold`: the job is orderlake.jobs.batch, on the warm Spark.
"""

import sys

from orderlake.jobs.batch import main

if __name__ == "__main__":
    sys.exit(main(["gold", *sys.argv[1:]]))
