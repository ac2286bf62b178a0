"""Data quality entry point: the GX suites of expectations/ against the lake. Runnable by hand
(the Airflow task runs the same job):

    .venv/bin/python batch/validate.py [--suite NAME ...]

Same as `orderlake validate`; the work is done by orderlake.quality.
"""

import sys

from orderlake.quality import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
