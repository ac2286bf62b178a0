"""Batch layer entry point: silver. Runnable by hand or from an Airflow task:

    .venv/bin/python batch/silver.py [--full] [--close-through YYYY-MM-DD]

Same as `orderlake batch silver`; the work is done by orderlake.jobs.batch.
"""

import sys

from orderlake.cli import main

if __name__ == "__main__":
    sys.exit(main(["batch", "silver", *sys.argv[1:]]))
