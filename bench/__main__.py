"""``python -m bench``: ptdispatch against socat, obfs4proxy and shadowsocks-libev, on loopback.

For each row a client proxy and a server proxy are started (two processes, like tor's client and
bridge), the load generator (this process, plain sockets and threads) enters the client proxy, and a
target process (bench/target.py) echoes or discards behind the server proxy.  CPU and memory are
read from /proc for the proxy processes only (and any children they fork, as socat does).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from . import peers, report
from .procs import raise_fd_limit, stop
from .rows import Row, all_rows, select
from .runner import Settings, run_group


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    names = ", ".join(row.name for row in all_rows())
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--quick", action="store_true", help="small sizes and few connections (smoke test, CI)")
    p.add_argument("--only", metavar="ROWS", help=f"comma-separated rows or transports; rows: {names}")
    p.add_argument("--size", type=float, metavar="MIB", help="MiB pushed one way per throughput run (default 256)")
    p.add_argument("--connections", type=int, metavar="N", help="concurrent idle connections held (default 1000)")
    p.add_argument("--latency", type=int, metavar="N", help="fresh connections timed for latency (default 300)")
    p.add_argument(
        "--handshakes", type=int, metavar="N", help="connections for server CPU per connection (default 300)"
    )
    p.add_argument(
        "--repeat",
        type=int,
        default=None,
        metavar="N",
        help="latency, throughput and server-connection runs per row, median kept (default 2)",
    )
    p.add_argument("--echo", action="store_true", help="also measure throughput through an echo (both ways)")
    p.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    p.add_argument("--no-goals", action="store_true", help="do not print the goals")
    p.add_argument("-v", "--verbose", action="store_true", help="print each step's duration and tracebacks")
    return p.parse_args(argv)


def settings_from(args: argparse.Namespace) -> Settings:
    quick = args.quick

    def pick(value: float | None, full: float, small: float) -> float:
        return value if value is not None else (small if quick else full)

    return Settings(
        size_mib=pick(args.size, 256, 4),
        connections=int(pick(args.connections, 1000, 20)),
        latency_count=int(pick(args.latency, 300, 10)),
        handshake_count=int(pick(args.handshakes, 300, 10)),
        echo=args.echo,
        verbose=args.verbose,
        repeat=max(1, int(pick(args.repeat, 2, 1))),
    )


def side_by_side(rows: Sequence[Row]) -> dict[str, list[Row]]:
    """The rows in groups that run side by side: each row's own group (its transport), joined with
    the group of every row a goal compares it with, so that a comparison is never made between
    figures measured minutes apart on a shared machine."""
    home = {row.name: row.group for row in rows}
    first = {group: i for i, group in reversed(list(enumerate(home.values())))}  # a group's first row

    def root(group: str) -> str:
        while parent.get(group, group) != group:
            group = parent[group]
        return group

    parent: dict[str, str] = {}
    for mine, peer in report.compared_rows():
        if mine in home and peer in home:
            a, b = sorted((root(home[mine]), root(home[peer])), key=first.__getitem__)
            if a != b:
                parent[b] = a  # a joined group keeps the name of its first row's group
    groups: dict[str, list[Row]] = {}
    for row in rows:
        groups.setdefault(root(row.group), []).append(row)
    return groups


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    settings = settings_from(args)
    rows = select(all_rows(), args.only)
    raise_fd_limit()
    results: list[dict[str, Any]] = []
    load_before = os.getloadavg()
    began = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="ptdispatch-bench-") as tmp:
        workdir = Path(tmp)
        target = peers.target(workdir)
        try:
            runnable = []
            for row in rows:
                why = row.available()
                if why is not None:
                    results.append({"row": row.name, "skipped": why})
                else:
                    runnable.append(row)
            groups = side_by_side(runnable)
            for name, members in groups.items():
                if settings.verbose:
                    print(f"-- {name}: {', '.join(row.name for row in members)}", flush=True)
                results.extend(run_group(members, target, workdir, settings))
            order = {row.name: i for i, row in enumerate(rows)}
            results.sort(key=lambda r: order[r["row"]])
        finally:
            stop([target.proc])
    elapsed = time.monotonic() - began
    load_after = os.getloadavg()
    print(
        f"ptdispatch bench: {settings.size_mib:g} MiB one way, {settings.connections} idle connections, "
        f"{settings.latency_count}x{settings.repeat} latency and {settings.handshake_count} server connections, "
        f"{settings.repeat} throughput run(s) per row; {elapsed:.0f} s on {os.cpu_count()} CPUs, "
        f"load average {load_before[0]:.1f} before, {load_after[0]:.1f} after"
    )
    print(report.table(results, settings.echo))
    goal_list = report.goals(results)
    if not args.no_goals:
        print()
        print(report.goals_text(goal_list))
    if args.json:
        payload = {
            "settings": settings.__dict__,
            "elapsed_s": elapsed,
            "loadavg": [load_before, load_after],
            "results": results,
            "goals": goal_list,
        }
        Path(args.json).write_text(json.dumps(payload, indent=2, default=str) + "\n")
    failed = [r for r in results if r.get("errors")]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
