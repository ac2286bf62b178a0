"""Batch layer entry point: bronze. Runnable by hand or from an Airflow task:

    .venv/bin/python batch/bronze.py [--full] [--close-through YYYY-MM-DD]

Same as `orderlake batch bronze`; the work is done by orderlake.jobs.batch.
"""

import sys

from orderlake.cli import main

if __name__ == "__main__":
    sys.exit(main(["batch", "bronze", *sys.argv[1:]]))
