"""Batch entry point: Kafka vs bronze vs silver, and speed vs batch -> ops.reconciliation.
By hand (the Airflow task runs the same job):

    .venv/bin/python batch/reconcile.py [--date YYYY-MM-DD]

Same as `orderlake reconcile`; the job is orderlake.jobs.reconcile, on the warm Spark.
"""

import sys

from orderlake.jobs.reconcile import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
