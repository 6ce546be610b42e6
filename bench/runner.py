"""Run one row: start the pair, measure memory, latency, server handshakes and throughput, stop everything."""

from __future__ import annotations

import math
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import load
from .peers import Side
from .procs import stop
from .rows import Pair, Row


@dataclass(frozen=True)
class Settings:
    size_mib: float
    connections: int
    latency_count: int
    handshake_count: int
    echo: bool
    verbose: bool
    repeat: int = 1


def _step(result: dict[str, Any], what: str, fn: Callable[[], dict[str, float] | None], verbose: bool) -> None:
    start = time.perf_counter()
    try:
        result.update(fn() or {})
    except Exception as exc:
        result.setdefault("errors", []).append(f"{what}: {type(exc).__name__}: {exc}")
        if verbose:
            traceback.print_exc()
    if verbose:
        print(f"    {what}: {time.perf_counter() - start:.1f}s", flush=True)


def run_row(row: Row, target: Side, workdir: Path, settings: Settings) -> dict[str, Any]:
    """Every measurement for one row; errors are recorded in the result, never raised."""
    result: dict[str, Any] = {"row": row.name}
    started: list[Side] = []
    rowdir = workdir / row.name.replace(" ", "_").replace("/", "-")
    rowdir.mkdir(parents=True, exist_ok=True)
    try:
        try:
            pair = row.setup(rowdir, target, started)
        except Exception as exc:
            result["errors"] = [f"start: {type(exc).__name__}: {exc}"]
            return result
        if pair.note:
            result["note"] = pair.note
        _measure(pair, result, settings)
    finally:
        stop([side.proc for side in reversed(started)])
    return result


def _measure(pair: Pair, result: dict[str, Any], s: Settings) -> None:
    entry = pair.entry
    try:
        load.latency(entry, 3)  # warm-up, and proof that the pair works at all
    except Exception as exc:
        result["errors"] = [f"warm-up: {type(exc).__name__}: {exc}"]
        return
    if pair.pids:
        _step(result, "idle", lambda: load.idle_connections(entry, s.connections, pair.pids), s.verbose)
    samples: list[float] = []
    runs: list[dict[str, float]] = []
    size = int(s.size_mib * (1 << 20))
    for _ in range(s.repeat):
        # latency and throughput alternate, so that a slow moment of the machine hits both alike
        _step(result, "latency", lambda: samples.extend(load.latency_samples(entry, s.latency_count)), s.verbose)
        _step(result, "throughput", lambda: runs.append(load.throughput(entry, size, pair.pids)), s.verbose)
    if samples:
        result.update(load.summarize_latency(samples))
    if runs:
        runs.sort(key=lambda r: r["mib_s"] if math.isnan(r["mib_cpu_s"]) else r["mib_cpu_s"])
        result.update(runs[len(runs) // 2])
        if len(runs) > 1:
            result["mib_cpu_s_runs"] = [r["mib_cpu_s"] for r in runs]
            result["mib_s_runs"] = [r["mib_s"] for r in runs]
    if pair.server_pids:
        dial = load.via_entry(entry)
        _step(result, "handshakes", lambda: load.handshakes(dial, s.handshake_count, pair.server_pids), s.verbose)
    if s.echo:

        def echo() -> dict[str, float]:
            out = load.throughput(entry, size, pair.pids, echo=True)
            return {"echo_mib_s": out["mib_s"], "echo_mib_cpu_s": out["mib_cpu_s"]}

        _step(result, "echo", echo, s.verbose)
