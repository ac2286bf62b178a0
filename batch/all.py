"""Batch layer entry point: bronze, then silver, then gold. Runnable by hand or from Airflow:

    .venv/bin/python batch/all.py [--full] [--close-through YYYY-MM-DD]

Same as `orderlake batch all`: the job is orderlake.jobs.batch, on the warm Spark.
"""

import sys

from orderlake.jobs.batch import main

if __name__ == "__main__":
    sys.exit(main(["all", *sys.argv[1:]]))
