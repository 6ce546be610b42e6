"""Run a group of rows side by side: start every pair, then measure them in alternation, stop everything.

Rows that are compared with each other (socat and plain; obfs4 by us and by obfs4proxy; ...) run
in one group, their latency batches and throughput runs interleaved, so that a slow moment of a
shared machine hits all of them alike instead of deciding a comparison.
"""

from __future__ import annotations

import functools
import math
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import load
from .peers import Side
from .procs import stop
from .rows import Pair, Row

LATENCY_BATCHES = 4
"""Latency connections per run are split into this many batches, alternating between the rows."""
SETUP_BATCHES = 4
"""So are each run's server connections (one figure per run: all its batches' connections over their CPU)."""


@dataclass(frozen=True)
class Settings:
    size_mib: float
    connections: int
    latency_count: int
    handshake_count: int
    echo: bool
    verbose: bool
    repeat: int = 1


@dataclass
class Running:
    """One row of the group: its started pair and what was measured."""

    row: Row
    result: dict[str, Any]
    pair: Pair | None = None
    samples: list[float] = field(default_factory=list)
    runs: list[dict[str, float]] = field(default_factory=list)
    setups: list[dict[str, float]] = field(default_factory=list)

    def step(self, what: str, fn: Callable[[Pair], dict[str, float] | None], verbose: bool) -> None:
        """Run one measurement; an error is recorded in the result, never raised."""
        if self.pair is None:
            return
        start = time.perf_counter()
        try:
            self.result.update(fn(self.pair) or {})
        except Exception as exc:
            self.result.setdefault("errors", []).append(f"{what}: {type(exc).__name__}: {exc}")
            if verbose:
                traceback.print_exc()
        if verbose:
            print(f"    {self.row.name}: {what} {time.perf_counter() - start:.1f}s", flush=True)


def run_group(rows: Sequence[Row], target: Side, workdir: Path, settings: Settings) -> list[dict[str, Any]]:
    """Every measurement for every row of the group; errors are recorded in the results."""
    group = [Running(row, {"row": row.name}) for row in rows]
    started: list[Side] = []
    try:
        for item in group:
            _start(item, target, workdir, started)
        _measure(group, settings)
    finally:
        stop([side.proc for side in reversed(started)])
    for item in group:
        _summarize(item)
    return [item.result for item in group]


def _start(item: Running, target: Side, workdir: Path, started: list[Side]) -> None:
    rowdir = workdir / item.row.name.replace(" ", "_").replace("/", "-")
    rowdir.mkdir(parents=True, exist_ok=True)
    try:
        pair = item.row.setup(rowdir, target, started)
        load.latency(pair.entry, 3)  # warm-up, and proof that the pair works at all
    except Exception as exc:
        item.result["errors"] = [f"start: {type(exc).__name__}: {exc}"]
        return
    item.pair = pair
    if pair.note:
        item.result["note"] = pair.note


def _measure(group: list[Running], s: Settings) -> None:
    size = int(s.size_mib * (1 << 20))
    for item in group:
        if item.pair is not None and item.pair.pids:
            item.step("idle", lambda p: load.idle_connections(p.entry, s.connections, p.pids), s.verbose)
    batch = max(1, s.latency_count // LATENCY_BATCHES)
    for _ in range(s.repeat):
        for _ in range(max(1, s.latency_count // batch)):
            for item in group:
                item.step("latency", functools.partial(_latency, item.samples, batch), False)
        for item in group:
            item.step("throughput", functools.partial(_throughput, item.runs, size), s.verbose)
        servers = [item for item in group if item.pair is not None and item.pair.server_pids]
        per_batch = max(1, s.handshake_count // SETUP_BATCHES)
        batches: list[list[dict[str, float]]] = [[] for _ in servers]  # this run's, by row
        for _ in range(max(1, s.handshake_count // per_batch)):
            for item, done in zip(servers, batches, strict=True):
                item.step("handshakes", functools.partial(_handshakes, done, per_batch), s.verbose)
        for item, done in zip(servers, batches, strict=True):
            if done:
                item.setups.append(load.combine_handshakes(done))
    if s.echo:
        for item in group:
            item.step("echo", lambda p: _echo(p, size), s.verbose)


def _latency(samples: list[float], count: int, pair: Pair) -> None:
    samples.extend(load.latency_samples(pair.entry, count))


def _throughput(runs: list[dict[str, float]], size: int, pair: Pair) -> None:
    runs.append(load.throughput(pair.entry, size, pair.pids))


def _handshakes(batches: list[dict[str, float]], count: int, pair: Pair) -> None:
    batches.append(load.handshakes(load.via_entry(pair.entry), count, pair.server_pids))


def _echo(pair: Pair, size: int) -> dict[str, float]:
    out = load.throughput(pair.entry, size, pair.pids, echo=True)
    return {"echo_mib_s": out["mib_s"], "echo_mib_cpu_s": out["mib_cpu_s"]}


def _summarize(item: Running) -> None:
    result = item.result
    if item.samples:
        result.update(load.summarize_latency(item.samples))
    runs = sorted(item.runs, key=lambda r: r["mib_s"] if math.isnan(r["mib_cpu_s"]) else r["mib_cpu_s"])
    if runs:
        result.update(runs[len(runs) // 2])  # the median run by MiB per CPU-second
        if len(runs) > 1:
            result["mib_cpu_s_runs"] = [r["mib_cpu_s"] for r in runs]
            result["mib_s_runs"] = [r["mib_s"] for r in runs]
    setups = sorted(item.setups, key=lambda r: -math.inf if math.isnan(r["hs_per_cpu_s"]) else r["hs_per_cpu_s"])
    if setups:
        result.update(setups[len(setups) // 2])  # the median run by server setups per CPU-second
        if len(setups) > 1:
            result["hs_per_cpu_s_runs"] = [r["hs_per_cpu_s"] for r in setups]
    if "errors" in result:  # one message per kind of failure is enough
        result["errors"] = list(dict.fromkeys(result["errors"]))
