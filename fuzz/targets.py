"""The registry of fuzz targets, importable without atheris (the test suite replays the corpora).

Adding a target is one line in :mod:`fuzz.engines` (``engine_target(name, make_engine)`` for a
transport engine) or a ``@target(name)`` function in :mod:`fuzz.protocols`; seeds go in
``fuzz/corpus/<name>/`` and found crashers stay in ``fuzz/crashers/<name>/``.
"""

from __future__ import annotations

from pathlib import Path

from . import darkstar, engines, meek, protocols  # noqa: F401 - importing registers their targets
from .support import TARGETS, Target

ROOT = Path(__file__).resolve().parent
CORPUS = ROOT / "corpus"
CRASHERS = ROOT / "crashers"

__all__ = ["CORPUS", "CRASHERS", "ROOT", "TARGETS", "Target", "inputs"]


def inputs(name: str) -> list[Path]:
    """Every kept input of target ``name``: its seed corpus and its regression inputs."""
    found: list[Path] = []
    for base in (CORPUS / name, CRASHERS / name):
        if base.is_dir():
            found.extend(sorted(p for p in base.iterdir() if p.is_file()))
    return found
