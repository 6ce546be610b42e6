"""The benchmark (``python -m bench``) runs end to end in a tiny configuration, and judges goals right."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from bench import report
from bench.rows import all_rows, select

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.timeout(90)
def test_bench_quick_runs_direct_and_plain(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    argv = [sys.executable, "-m", "bench", "--quick", "--only", "direct,plain,shadow-floor/floor", "--size", "1"]
    argv += ["--connections", "5", "--latency", "3", "--handshakes", "3", "--json", str(out)]
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=80)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "plain ptd/ptd" in done.stdout
    assert "Goals" in done.stdout
    data = json.loads(out.read_text())
    rows = {r["row"]: r for r in data["results"]}
    assert set(rows) == {"direct", "plain ptd/ptd", "shadow floor/floor"}
    plain = rows["plain ptd/ptd"]
    assert not plain.get("errors"), plain
    assert plain["mib_s"] > 0
    assert plain["lat_median_ms"] > 0
    assert plain["dropped"] == 0
    assert plain["conns"] == 5
    assert rows["direct"]["lat_median_ms"] > 0
    floor = rows["shadow floor/floor"]
    assert not floor.get("errors") and floor["dropped"] == 0 and floor["lat_median_ms"] > 0, floor


def test_select_rows_by_name_or_transport() -> None:
    rows = all_rows()
    names = [r.name for r in select(rows, "obfs4,socat")]
    assert names == ["socat", "obfs4 ptd/ptd", "obfs4 opt/ptd", "obfs4 o4p/o4p", "obfs4 ptd/o4p", "obfs4 o4p/ptd"]
    assert [r.name for r in select(rows, "plain-ptd/ptd")] == ["plain ptd/ptd"]
    with pytest.raises(SystemExit):
        select(rows, "nonesuch")


def test_goals_pass_fail_and_missing() -> None:
    results = [
        {"row": "socat", "lat_median_ms": 1.0},
        {"row": "plain ptd/ptd", "mib_cpu_s": 350.0, "lat_median_ms": 2.5, "kib_per_conn": 10.0, "dropped": 0},
        {"row": "obfs4 ptd/ptd", "mib_cpu_s": 40.0, "lat_median_ms": 3.0, "kib_per_conn": 70.0, "dropped": 2},
        {"row": "obfs4 o4p/o4p", "mib_cpu_s": 50.0, "lat_median_ms": 3.5},
    ]
    status = {g["goal"]: g["status"] for g in report.goals(results)}
    assert status["plain >= 300 MiB per CPU-second"] == "PASS"
    assert status["plain connect+1-byte echo (median) <= 2x socat's"] == "FAIL"
    assert status["plain RSS per idle connection <= 64 KiB (client+server)"] == "PASS"
    assert status["obfs4 MiB/CPU-s >= obfs4proxy's"] == "FAIL"
    assert status["obfs4 connect+echo latency (median) <= obfs4proxy's"] == "PASS"
    assert status["shadow MiB/CPU-s >= ss-libev's"] == "n/a"
    dropped = [g for g in report.goals(results) if g["goal"].startswith("obfs4 RSS")]
    assert dropped[0]["status"] == "FAIL" and "2 connections dropped" in dropped[0]["goal"]
    text = report.table(results) + report.goals_text(report.goals(results))
    assert "PASS" in text and "FAIL" in text
