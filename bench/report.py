"""The table, and the figures the issues ask for next to their goals."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

Result = Mapping[str, Any]

COLUMNS: list[tuple[str, str, str]] = [
    # (key, header, format)
    ("mib_s", "MiB/s", "{:.0f}"),
    ("mib_cpu_s", "MiB/CPU-s", "{:.0f}"),
    ("cpu_s", "CPU-s", "{:.2f}"),
    ("lat_median_ms", "lat med ms", "{:.3f}"),
    ("lat_p90_ms", "lat p90 ms", "{:.3f}"),
    ("hs_per_cpu_s", "srv conn/CPU-s", "{:.0f}"),
    ("rss_idle_kib", "RSS idle MiB", "{:.1f}"),
    ("rss_conn_kib", "RSS conns MiB", "{:.1f}"),
    ("kib_per_conn", "RSS KiB/conn", "{:.1f}"),
    ("pss_kib_per_conn", "PSS KiB/conn", "{:.1f}"),
    ("dropped", "dropped", "{}"),
]
ECHO_COLUMNS: list[tuple[str, str, str]] = [
    ("echo_mib_s", "echo MiB/s", "{:.0f}"),
    ("echo_mib_cpu_s", "echo MiB/CPU-s", "{:.0f}"),
]


def _cell(result: Result, key: str, fmt: str) -> str:
    value = result.get(key)
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if key in ("rss_idle_kib", "rss_conn_kib"):
        value = value / 1024
    if key == "dropped":
        return f"{value}/{result.get('conns', '?')}"
    return fmt.format(value)


def table(results: Sequence[Result], echo: bool = False) -> str:
    columns = COLUMNS + (ECHO_COLUMNS if echo else [])
    header = ["row", *(title for _, title, _ in columns)]
    body = [[str(r["row"]), *(_cell(r, key, fmt) for key, _, fmt in columns)] for r in results]
    widths = [max(len(line[i]) for line in [header, *body]) for i in range(len(header))]

    def fmt_line(cells: list[str]) -> str:
        return "  ".join(
            c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        )

    lines = [fmt_line(header), "  ".join("-" * w for w in widths), *(fmt_line(b) for b in body)]
    lines.append(
        "CPU and memory: the two proxy processes only (client+server, children included); srv conn/CPU-s: "
        "server alone. Rows: transport client/server, ptd = ptdispatch, o4p = obfs4proxy, ss = ss-libev, "
        "opt = ptdispatch's Optimizer client over that one transport."
    )
    for r in results:
        for message in r.get("errors", []):
            lines.append(f"  ! {r['row']}: {message}")
        if r.get("note"):
            lines.append(f"  * {r['row']}: {r['note']}")
        if r.get("skipped"):
            lines.append(f"  - {r['row']}: skipped ({r['skipped']})")
    return "\n".join(lines)


def _get(by: Mapping[str, Result], row: str, key: str) -> float | None:
    value = by.get(row, {}).get(key)
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return float(value)


def _goal(text: str, ours: float | None, theirs: float | None, ok: bool | None, unit: str) -> dict[str, Any]:
    status = "n/a" if ok is None else ("PASS" if ok else "FAIL")
    return {"goal": text, "figure": ours, "against": theirs, "unit": unit, "status": status}


def _at_least(text: str, ours: float | None, theirs: float | None, unit: str, factor: float = 1.0) -> dict[str, Any]:
    bound = None if theirs is None else theirs * factor
    ok = None if ours is None or bound is None else ours >= bound
    return _goal(text, ours, bound, ok, unit)


def _at_most(text: str, ours: float | None, theirs: float | None, unit: str, factor: float = 1.0) -> dict[str, Any]:
    bound = None if theirs is None else theirs * factor
    ok = None if ours is None or bound is None else ours <= bound
    return _goal(text, ours, bound, ok, unit)


PEER_GOALS = (
    ("obfs4", "o4p", "obfs4proxy"),
    ("shadow", "ss", "ss-libev"),
    ("obfs2", "o4p", "obfs4proxy"),
    ("obfs3", "o4p", "obfs4proxy"),
    ("meek", "o4p/ptd", "obfs4proxy meek_lite (same server)"),
)
"""Transports whose throughput and latency must match their deployed peer's (row prefix, impl, name)."""


def goals(results: Sequence[Result]) -> list[dict[str, Any]]:
    by = {str(r["row"]): r for r in results}
    out = [
        _at_least("plain >= 300 MiB per CPU-second", _get(by, "plain ptd/ptd", "mib_cpu_s"), 300.0, "MiB/CPU-s"),
        _at_most(
            "plain connect+1-byte echo (median) <= 2x socat's",
            _get(by, "plain ptd/ptd", "lat_median_ms"),
            _get(by, "socat", "lat_median_ms"),
            "ms",
            2.0,
        ),
    ]
    for row in by:
        if row.endswith(" ptd/ptd"):
            kib = _get(by, row, "kib_per_conn")
            dropped = by[row].get("dropped")
            goal = _at_most(f"{row.split()[0]} RSS per idle connection <= 64 KiB (client+server)", kib, 64.0, "KiB")
            if dropped:
                goal["status"] = "FAIL"
                goal["goal"] += f" [{dropped} connections dropped]"
            out.append(goal)
    for transport, peer, name in PEER_GOALS:
        mine = f"{transport} ptd/ptd"
        theirs = f"{transport} {peer}" if "/" in peer else f"{transport} {peer}/{peer}"
        out.append(
            _at_least(
                f"{transport} MiB/CPU-s >= {name}'s",
                _get(by, mine, "mib_cpu_s"),
                _get(by, theirs, "mib_cpu_s"),
                "MiB/CPU-s",
            )
        )
        out.append(
            _at_most(
                f"{transport} connect+echo latency (median) <= {name}'s",
                _get(by, mine, "lat_median_ms"),
                _get(by, theirs, "lat_median_ms"),
                "ms",
            )
        )
    out += _operator_goals(by)
    return out


def _operator_goals(by: Mapping[str, Result]) -> list[dict[str, Any]]:
    """DarkStar rows against our Shadowsocks AES-256-GCM (throughput) and obfs4 (server setups)."""
    out = []
    for row in ("shadow-darkstar ptd/ptd", "Starbridge ptd/ptd"):
        name = row.split()[0]
        out.append(
            _at_least(
                f"{name} MiB/CPU-s >= 0.9x our Shadowsocks AES-256-GCM's",
                _get(by, row, "mib_cpu_s"),
                _get(by, "shadow-aes256gcm ptd/ptd", "mib_cpu_s"),
                "MiB/CPU-s",
                0.9,
            )
        )
        out.append(
            _at_least(
                f"{name} server connections/CPU-s >= our obfs4's",
                _get(by, row, "hs_per_cpu_s"),
                _get(by, "obfs4 ptd/ptd", "hs_per_cpu_s"),
                "conn/CPU-s",
            )
        )
    return out


def goals_text(items: Sequence[Mapping[str, Any]]) -> str:
    def num(value: float | None) -> str:
        return "-" if value is None else f"{value:.3f}" if value < 10 else f"{value:.0f}"

    width = max(len(str(g["goal"])) for g in items)
    lines = ["Goals (ours vs bound):"]
    for g in items:
        lines.append(f"  {g['status']:<4}  {g['goal']:<{width}}  {num(g['figure'])} vs {num(g['against'])} {g['unit']}")
    return "\n".join(lines)
