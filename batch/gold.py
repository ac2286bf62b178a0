"""Batch layer entry point: gold. Runnable by hand or from an Airflow task:

    .venv/bin/python batch/gold.py [--full] [--close-through YYYY-MM-DD]

Same as `orderlake batch gold`; the work is done by orderlake.jobs.batch.
"""

import sys

from orderlake.cli import main

if __name__ == "__main__":
    sys.exit(main(["batch", "gold", *sys.argv[1:]]))
