"""Tor PT 1.0 managed-proxy mode: TOR_PT_* environment variables -> Config."""

from __future__ import annotations

import sys
from collections.abc import Callable, Coroutine, Mapping
from typing import Any


def main(environ: Mapping[str, str], run: Callable[[Coroutine[Any, Any, int]], int]) -> int:
    sys.stdout.write("ENV-ERROR PT 1.0 managed mode is not implemented yet\n")
    sys.stdout.flush()
    return 1
