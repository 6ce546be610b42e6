"""CI: every fuzz target runs briefly under atheris (coverage-guided), with no finding."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from fuzz.targets import ROOT, TARGETS

from tests.conftest import CI

SECONDS = 1  # per target; libFuzzer's -max_total_time (the process start adds ~1-2 s)


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_every_target_fuzzes_briefly_without_findings(tmp_path: Path) -> None:
    try:
        import atheris  # type: ignore[import-untyped]  # noqa: F401
    except ImportError:
        if CI:
            pytest.fail("atheris is not installed (pip install atheris); under CI it is required")
        pytest.skip("atheris is not installed (pip install atheris)")
    report = tmp_path / "fuzz.jsonl"
    env = {**os.environ, "PTDISPATCH_FUZZ_WORK": str(tmp_path / "work")}
    proc = subprocess.run(
        [sys.executable, "-m", "fuzz.run", "--seconds", str(SECONDS), "--jobs", "2", "--json", str(report)],
        cwd=ROOT.parent, env=env, capture_output=True, text=True, timeout=230, check=False,
    )  # fmt: skip
    results = [json.loads(line) for line in report.read_text().splitlines()]
    assert {r["target"] for r in results} == set(TARGETS), proc.stdout + proc.stderr
    for result in results:
        assert not result["findings"], f"{result['target']}: findings {result['findings']} (see fuzz/crashers/)"
        assert result["returncode"] == 0, f"{result['target']}: exit {result['returncode']}\n{proc.stdout}"
        assert result["executions"] > 0, result
