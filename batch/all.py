"""Batch layer entry point: bronze, then silver, then gold. Runnable by hand or from Airflow:

    .venv/bin/python batch/all.py [--full] [--close-through YYYY-MM-DD]

Same as `orderlake batch all`; the work is done by orderlake.jobs.batch.
"""

import sys

from orderlake.cli import main

if __name__ == "__main__":
    sys.exit(main(["batch", "all", *sys.argv[1:]]))
