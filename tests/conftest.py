"""Shared pytest configuration: fixtures live in modules under tests/fixtures/."""

import os
import time

# Spark hands time stamps to Python in the process's local zone: make that UTC, like the lake.
os.environ["TZ"] = "UTC"
time.tzset()

pytest_plugins = ["tests.fixtures.stack", "tests.fixtures.spark"]
