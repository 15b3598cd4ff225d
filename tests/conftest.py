"""Shared fixtures: a real Postgres per test, and the sandbox APIs on loopback."""

pytest_plugins = ["tests.fixtures_db", "tests.fixtures_sandbox"]
