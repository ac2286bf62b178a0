"""The jobs that read and write the lake: the speed layer (always on) and the batch jobs.

The batch jobs are what `orderlake NAME ...`, batch/*.py and the Airflow tasks run
(orderlake.jobs.runner says how). ``BATCH_JOBS`` names them without importing them, so the
command line builds its help without loading Great Expectations or pyspark's SQL stack.
"""

from __future__ import annotations

import importlib
from types import ModuleType

# command name -> (module, one line of help)
BATCH_JOBS: dict[str, tuple[str, str]] = {
    "batch": ("orderlake.jobs.batch", "Run the batch layer: Kafka -> bronze -> silver -> gold."),
    "replay": ("orderlake.jobs.replay", "Re-read a range of a topic and rewrite what it affects."),
    "validate": ("orderlake.quality", "Run the data-quality suites (expectations/) on the lake."),
    "reconcile": (
        "orderlake.jobs.reconcile",
        "Check Kafka vs bronze vs silver, and speed vs batch.",
    ),
    "maintain": ("orderlake.jobs.maintenance", "OPTIMIZE and guarded VACUUM of the batch tables."),
}


def batch_job(name: str) -> ModuleType:
    """The module of the batch job called ``name`` (a key of BATCH_JOBS)."""
    return importlib.import_module(BATCH_JOBS[name][0])
