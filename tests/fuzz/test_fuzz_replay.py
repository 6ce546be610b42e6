"""Every kept fuzz input (seed corpora and found crashers) through the targets, without atheris.

A target raises only on a finding, and no input may take more than a second: this is the
regression test for everything the fuzzer ever found (fuzz/crashers/<target>/).
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from fuzz.targets import CORPUS, CRASHERS, TARGETS, inputs

LIMIT = 1.0  # seconds per input, as the fuzzer's -timeout=1


def _timed(name: str, path: Path) -> float:
    started = time.perf_counter()
    TARGETS[name](path.read_bytes())
    return time.perf_counter() - started


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_kept_inputs_replay_cleanly(name: str) -> None:
    kept = inputs(name)
    assert kept, f"fuzz target {name} has no seed corpus (python -m fuzz.seeds writes them)"
    slow = {p.name: t for p in kept if (t := _timed(name, p)) > LIMIT}
    assert not slow, f"inputs over {LIMIT} s: {slow}"


def test_every_input_through_every_target() -> None:
    """Inputs of one target are odd inputs for the others: replay them all everywhere."""
    every = sorted({p for name in TARGETS for p in inputs(name)})
    for _name, fn in TARGETS.items():
        for path in every:
            fn(path.read_bytes())


def test_every_crasher_directory_names_a_target() -> None:
    for base in (CORPUS, CRASHERS):
        if base.is_dir():
            unknown = {d.name for d in base.iterdir() if d.is_dir()} - set(TARGETS)
            assert not unknown, f"{base} has directories for no target: {unknown}"
