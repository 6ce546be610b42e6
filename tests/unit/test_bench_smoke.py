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


def test_per_connection_goals_give_ratios_and_say_why_a_peer_is_missing() -> None:
    results: list[report.Result] = [
        {"row": "shadow ptd/ptd", "hs_per_cpu_s": 3000.0, "lat_median_ms": 1.0, "mib_cpu_s": 300.0},
        {"row": "shadow ss/ss", "skipped": "ss-server not installed"},
        {"row": "plain ptd/ptd", "hs_per_cpu_s": 3500.0, "lat_median_ms": 0.5, "mib_cpu_s": 900.0},
        {"row": "shadow floor/floor", "hs_per_cpu_s": 4000.0, "lat_median_ms": 0.5},
        {"row": "obfs4 ptd/ptd", "hs_per_cpu_s": 1000.0, "lat_median_ms": 2.0, "mib_cpu_s": 70.0},
        {"row": "obfs4 o4p/o4p", "errors": ["start: BenchError: exited"]},
    ]
    goals = {g["goal"]: g for g in report.goals(results)}
    plain = goals["#12 plain server setups per server CPU-s >= 0.8x the floor row"]
    assert plain["status"] == "PASS" and plain["ratio"] == pytest.approx(0.875)
    assert goals["#12 plain connect+1-byte echo median <= 1.1x the floor row"]["status"] == "PASS"
    shadow = goals["#12 shadow server setups per server CPU-s >= 0.5x ss-libev"]
    assert shadow["status"] == "n/a" and "ss-server not installed" in shadow["why"]
    assert "exited" in goals["#12 obfs4 MiB per CPU-s >= 1.2x obfs4proxy"]["why"]
    assert "not run" in goals["#12 plain MiB per CPU-s >= 1x socat -b262144"]["why"]
    text = report.goals_text(list(goals.values()))
    assert "ratio 0.88x" in text and "ss-server not installed" in text
    # ours, the peer's figure, then the bound the goal's factor makes of it
    assert "3500 vs 4000 conn/CPU-s (bound 3200)  ratio 0.88x" in text


@pytest.mark.timeout(120)
def test_bench_profile_runs_with_the_profiler(tmp_path: Path) -> None:
    """``bench.profile`` starts ptdispatch under its cProfile switch and reports the phases."""
    argv = [sys.executable, "-m", "bench.profile", "--only", "shadow ptd/ptd", "--count", "20", "--top", "3"]
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=110)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "server profiled" in done.stdout and "handshake" in done.stdout, done.stdout


def test_rows_a_goal_compares_run_side_by_side() -> None:
    from bench.__main__ import side_by_side

    group_of = {row.name: name for name, rows in side_by_side(all_rows()).items() for row in rows}
    pairs = report.compared_rows()
    assert ("plain ptd/ptd", "shadow floor/floor") in pairs and ("Starbridge ptd/ptd", "obfs4 ptd/ptd") in pairs
    for mine, peer in pairs:
        assert mine in group_of and peer in group_of, (mine, peer)  # no goal names a row that does not exist
        assert group_of[mine] == group_of[peer], (mine, peer)
    assert group_of["obfs2 ptd/ptd"] != group_of["meek ptd/ptd"]  # rows no goal compares stay apart


def test_server_connection_batches_combine_into_one_figure() -> None:
    from bench.load import combine_handshakes

    batches = [{"count": 100, "cpu_s": 0.05, "wall_s": 0.2}, {"count": 100, "cpu_s": 0.15, "wall_s": 0.2}]
    assert combine_handshakes(batches) == {"hs_per_cpu_s": 1000.0, "hs_per_s": 500.0}  # not the mean of 2000 and 667
