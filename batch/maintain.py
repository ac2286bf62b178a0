"""Batch entry point: OPTIMIZE and guarded VACUUM of the batch tables.
By hand (the Airflow task runs the same job):

    .venv/bin/python batch/maintain.py [--optimize] [--vacuum] [--retain-hours H]

Same as `orderlake maintain`; the job is orderlake.jobs.maintenance, on the warm Spark.
"""

import sys

from orderlake.jobs.maintenance import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
