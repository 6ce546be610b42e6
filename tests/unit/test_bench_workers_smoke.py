"""``python -m bench.workers --quick`` runs end to end and prints every figure and goal."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.timeout(120)
def test_bench_workers_quick() -> None:
    argv = [sys.executable, "-m", "bench.workers", "--quick"]
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=110)
    assert done.returncode in (0, 1), done.stdout + done.stderr  # 1: a goal failed (tiny sizes are noise)
    out = done.stdout
    assert "workers  idle RSS/PSS MiB" in out
    assert "replay burst: 50 of 50 refused" in out
    assert "replay check: shm" in out
    if len(os.sched_getaffinity(0)) > 1:
        assert "a wake-up on another CPU: " in out, out
    for goal in ("serves 35-65%", "CPU-s per connection", "parallel bulk", "shared replay check"):
        assert goal in out, out
