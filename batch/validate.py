"""Data quality entry point: the GX suites of expectations/ against the lake. Runnable by hand
or from an Airflow task:

    .venv/bin/python batch/validate.py [--suite NAME ...]

Same as `orderlake validate`; the work is done by orderlake.quality.
"""

import sys

from orderlake.cli import main

if __name__ == "__main__":
    sys.exit(main(["validate", *sys.argv[1:]]))
