"""-workers with -metrics: the value directory of a run that was killed (SIGKILL leaves it behind)
is removed by the next start, and only such a one."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from ptdispatch import metrics


def _start_time(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_bytes().rpartition(b")")[2].split()[19])


@pytest.fixture
def dead_pid() -> tuple[int, int]:
    """The pid and start time of a process that has ended (started here, killed by its pid)."""
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        started = _start_time(child.pid)
    finally:
        child.kill()
        child.wait()
    return child.pid, started


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc")
def test_a_dead_runs_directory_is_removed_a_live_ones_stays(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, dead_pid: tuple[int, int]
) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    pid, started = dead_pid
    me, my_start = os.getpid(), _start_time(os.getpid())
    dead = tmp_path / f"ptdispatch-metrics-{pid}-{started}-a1b2c3d4"
    reused = tmp_path / f"ptdispatch-metrics-{me}-{my_start + 1}-e5f6g7h8"  # this pid, an earlier process's
    live = tmp_path / f"ptdispatch-metrics-{me}-{my_start}-i9j0k1l2"
    unknown_start = tmp_path / f"ptdispatch-metrics-{me}-0-m3n4o5p6"  # made where /proc could not be read
    kept = [
        live,
        unknown_start,
        tmp_path / "ptdispatch-metrics-q7r8s9t0",  # an older version's name: whose it is cannot be told
        tmp_path / f"other-metrics-{pid}-{started}-u1v2w3x4",  # not ours
    ]
    for directory in [dead, reused, *kept]:
        directory.mkdir()
        (directory / "counter_1.db").write_bytes(b"values")
    (tmp_path / f"ptdispatch-metrics-{pid}-{started}-file").write_bytes(b"a file, not a directory")

    path = metrics.prepare_multiprocess()

    assert not dead.exists() and not reused.exists()
    assert all((directory / "counter_1.db").exists() for directory in kept)
    assert (tmp_path / f"ptdispatch-metrics-{pid}-{started}-file").exists()
    assert os.environ["PROMETHEUS_MULTIPROC_DIR"] == path
    made = Path(path)
    assert made.parent == tmp_path and made.name.startswith(f"ptdispatch-metrics-{me}-{my_start}-")
    metrics.remove_abandoned(str(tmp_path))  # this run's own directory is a live run's
    assert made.is_dir()
