"""Batch entry point: Kafka vs bronze vs silver, and speed vs batch -> ops.reconciliation.
By hand or from an Airflow task:

    .venv/bin/python batch/reconcile.py [--date YYYY-MM-DD]

Same as `orderlake reconcile`; the work is done by orderlake.jobs.reconcile.
"""

import sys

from orderlake.cli import main

if __name__ == "__main__":
    sys.exit(main(["reconcile", *sys.argv[1:]]))
