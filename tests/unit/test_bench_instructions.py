"""``python -m bench.instructions`` counts a server's instructions per connection (needs valgrind)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from bench.instructions import Counts, parse

from tests.conftest import need_binary

ROOT = Path(__file__).resolve().parents[2]

# A callgrind file with name compression, a call (whose cost line is the callee's, not ours) and
# subposition compression.
SAMPLE = """\
version: 1
creator: callgrind-3.19.0
events: Ir
ob=(1) /usr/lib/libpython3.11.so
fl=(1) ceval.c
fn=(1) _PyEval_EvalFrameDefault
10 100
+2 50
cob=(2) /usr/lib/libcrypto.so.3
cfn=(2) EVP_EncryptUpdate
calls=1 0
12 7000
ob=(2)
fl=(2) chacha.c
fn=(2)
5 300
"""


def test_parse_counts_self_cost_by_object_and_function(tmp_path: Path) -> None:
    path = tmp_path / "cg.1"
    path.write_text(SAMPLE)
    counts = Counts()
    parse(path, counts)
    assert counts.objects == {"/usr/lib/libpython3.11.so": 150, "/usr/lib/libcrypto.so.3": 300}
    assert counts.functions[("libcrypto.so.3", "EVP_EncryptUpdate")] == 300
    assert counts.groups() == {"interpreter": 150, "crypto": 300, "uvloop": 0, "libc": 0, "other": 0}


@pytest.mark.timeout(300)
def test_counts_the_floor_server() -> None:
    need_binary("valgrind")
    argv = [sys.executable, "-m", "bench.instructions", "--servers", "floor", "--count", "20", "--warmup", "5"]
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=280)
    assert done.returncode == 0, done.stdout + done.stderr
    row = next(line for line in done.stdout.splitlines() if line.startswith("floor "))
    per_connection = int(row.split()[1].replace(",", ""))
    assert 20_000 < per_connection < 1_000_000, row  # the floor's Python relay: about 100,000


@pytest.mark.timeout(120)
def test_counts_bytecodes_of_a_ptdispatch_server() -> None:
    argv = [sys.executable, "-m", "bench.instructions", "--servers", "ptd:shadow", "--bytecodes"]
    argv += ["--count", "10", "--warmup", "3", "--top", "5"]
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=110)
    assert done.returncode == 0, done.stdout + done.stderr
    row = next(line for line in done.stdout.splitlines() if line.startswith("ptd:shadow "))
    bytecodes, calls = (float(word.replace(",", "")) for word in row.split()[1:3])
    assert 500 < bytecodes < 50_000 and 10 < calls < 2_000, row  # about 3,300 and 130 today
    assert "transports/shadow/" in done.stdout  # functions are named by their place in the source
