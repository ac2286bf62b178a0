"""Batch layer entry point: silver. Runnable by hand (the Airflow task runs the same job):

    .venv/bin/python batch/silver.py [--full] [--close-through YYYY-MM-DD]

Same as `orderlake batch silver`: the job is orderlake.jobs.batch, on the warm Spark.
"""

import sys

from orderlake.jobs.batch import main

if __name__ == "__main__":
    sys.exit(main(["silver", *sys.argv[1:]]))
