"""Loaded with `-p` (pyproject.toml), before Django is set up: prometheus-client chooses its
multiprocess mode when it is first imported, which happens during django.setup(). Each
test run gets a new, empty directory, shared with the worker processes the tests start
(they inherit the environment), so that /metrics served by the tests' web process adds up
the workers' counters as in production. A value set outside is replaced: tests never
read or write a running system's counters."""

import os
import shutil
import tempfile

DIRECTORY = tempfile.mkdtemp(prefix="clientflow-metrics-")
os.environ["PROMETHEUS_MULTIPROC_DIR"] = DIRECTORY


def pytest_unconfigure(config) -> None:
    shutil.rmtree(DIRECTORY, ignore_errors=True)
