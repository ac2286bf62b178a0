"""Shared pytest configuration: fixtures live in modules under tests/fixtures/."""

pytest_plugins = ["tests.fixtures.stack"]
