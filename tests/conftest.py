"""Shared fixtures and helpers for the whole suite."""

from __future__ import annotations

import gc
import os
import shutil
from collections.abc import Iterator

import hypothesis  # noqa: F401 - imported up front: CPython 3.11.7 can crash importing it during finalization
import pytest
from prometheus_client import CollectorRegistry

from ptdispatch import metrics

CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def need_binary(name: str) -> str:
    """Path of the real peer ``name``; skip the test when absent (fail under CI=true)."""
    path = shutil.which(name)
    if path is None:
        message = f"{name} is not installed (apt-get install the Debian package that provides it)"
        if CI:
            pytest.fail(message + "; under CI it is required")
        pytest.skip(message)
    return path


@pytest.fixture(autouse=True)
def _collect_garbage() -> Iterator[None]:
    """Finalize each test's leftover sockets and transports inside that test's time."""
    yield
    gc.collect()


@pytest.fixture
def registry() -> Iterator[CollectorRegistry]:
    """-metrics for this test alone: a private registry, and the module's hooks restored after."""
    saved = metrics.ACTIVE
    registry = CollectorRegistry()
    metrics.install(registry)
    try:
        yield registry
    finally:
        metrics.ACTIVE = saved
