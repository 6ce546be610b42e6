"""Shared fixtures and helpers for the whole suite."""

from __future__ import annotations

import os
import shutil

import pytest

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
