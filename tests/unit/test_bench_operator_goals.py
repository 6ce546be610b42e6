"""The benchmark's rows and goals for the Operator Foundation transports."""

from __future__ import annotations

from bench import report
from bench.rows import all_rows, select


def test_rows_exist_and_select_by_prefix() -> None:
    names = [r.name for r in select(all_rows(), "shadow-darkstar,Starbridge,shadow-aes256gcm")]
    assert names == ["shadow-aes256gcm ptd/ptd", "shadow-darkstar ptd/ptd", "Starbridge ptd/ptd"]


def test_goals_against_aes_shadowsocks_and_obfs4() -> None:
    results = [
        {"row": "obfs4 ptd/ptd", "hs_per_cpu_s": 1000.0},
        {"row": "shadow-aes256gcm ptd/ptd", "mib_cpu_s": 400.0},
        {"row": "shadow-darkstar ptd/ptd", "mib_cpu_s": 361.0, "hs_per_cpu_s": 999.0},
        {"row": "Starbridge ptd/ptd", "mib_cpu_s": 359.0, "hs_per_cpu_s": 1500.0},
    ]
    status = {g["goal"]: g["status"] for g in report.goals(results)}
    assert status["shadow-darkstar MiB/CPU-s >= 0.9x our Shadowsocks AES-256-GCM's"] == "PASS"
    assert status["shadow-darkstar server connections/CPU-s >= our obfs4's"] == "FAIL"
    assert status["Starbridge MiB/CPU-s >= 0.9x our Shadowsocks AES-256-GCM's"] == "FAIL"
    assert status["Starbridge server connections/CPU-s >= our obfs4's"] == "PASS"
