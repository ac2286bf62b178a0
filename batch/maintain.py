"""Batch entry point: OPTIMIZE and guarded VACUUM of the batch tables.
By hand or from an Airflow task:

    .venv/bin/python batch/maintain.py [--optimize] [--vacuum] [--retain-hours H]

Same as `orderlake maintain`; the work is done by orderlake.jobs.maintenance.
"""

import sys

from orderlake.cli import main

if __name__ == "__main__":
    sys.exit(main(["maintain", *sys.argv[1:]]))
