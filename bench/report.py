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


def _goal(
    text: str, ours: float | None, theirs: float | None, ok: bool | None, unit: str, factor: float = 1.0
) -> dict[str, Any]:
    status = "n/a" if ok is None else ("PASS" if ok else "FAIL")
    bound = None if theirs is None else theirs * factor
    ratio = None if ours is None or not theirs else ours / theirs
    return {
        "goal": text,
        "figure": ours,
        "against": bound,
        "peer": theirs,
        "ratio": ratio,
        "unit": unit,
        "status": status,
    }


def _at_least(text: str, ours: float | None, theirs: float | None, unit: str, factor: float = 1.0) -> dict[str, Any]:
    ok = None if ours is None or theirs is None else ours >= theirs * factor
    return _goal(text, ours, theirs, ok, unit, factor)


def _at_most(text: str, ours: float | None, theirs: float | None, unit: str, factor: float = 1.0) -> dict[str, Any]:
    ok = None if ours is None or theirs is None else ours <= theirs * factor
    return _goal(text, ours, theirs, ok, unit, factor)


def _missing(by: Mapping[str, Result], rows: Sequence[str], key: str) -> str | None:
    """Why a goal has no verdict: which of its rows has no figure, and why (skipped, failed, not run)."""
    for row in rows:
        result = by.get(row)
        if result is None:
            return f"row {row!r} not run"
        if result.get("skipped"):
            return f"row {row!r} skipped: {result['skipped']}"
        if _get(by, row, key) is None:
            errors = result.get("errors") or ["no figure"]
            return f"row {row!r}: {errors[0]}"
    return None


PER_CONNECTION_GOALS: tuple[tuple[str, str, str, str, float, str], ...] = (
    # (figure key, our row, peer row, "at least"/"at most", factor, peer's name)
    ("hs_per_cpu_s", "shadow ptd/ptd", "shadow ss/ss", "at least", 0.5, "ss-libev"),
    ("hs_per_cpu_s", "obfs2 ptd/ptd", "obfs2 o4p/o4p", "at least", 1.0, "obfs4proxy"),
    ("hs_per_cpu_s", "obfs4 ptd/ptd", "obfs4 o4p/o4p", "at least", 1.0, "obfs4proxy"),
    ("hs_per_cpu_s", "plain ptd/ptd", "shadow floor/floor", "at least", 0.8, "the floor row"),
    ("lat_median_ms", "obfs4 ptd/ptd", "obfs4 o4p/o4p", "at most", 1.0, "obfs4proxy"),
    ("lat_median_ms", "obfs2 ptd/ptd", "obfs2 o4p/o4p", "at most", 1.0, "obfs4proxy"),
    ("lat_median_ms", "shadow ptd/ptd", "shadow ss/ss", "at most", 1.4, "ss-libev"),
    ("lat_median_ms", "plain ptd/ptd", "shadow floor/floor", "at most", 1.1, "the floor row"),
    ("mib_cpu_s", "obfs4 ptd/ptd", "obfs4 o4p/o4p", "at least", 1.2, "obfs4proxy"),
    ("mib_cpu_s", "plain ptd/ptd", "socat-b256k", "at least", 1.0, "socat -b262144"),
)
"""Issue 12: what a bridge operator pays per connection, against the deployed peers."""

_FIGURES = {
    "hs_per_cpu_s": ("server setups per server CPU-s", "conn/CPU-s"),
    "lat_median_ms": ("connect+1-byte echo median", "ms"),
    "mib_cpu_s": ("MiB per CPU-s", "MiB/CPU-s"),
}


def per_connection_goals(by: Mapping[str, Result]) -> list[dict[str, Any]]:
    out = []
    for key, mine, peer, how, factor, name in PER_CONNECTION_GOALS:
        what, unit = _FIGURES[key]
        sign = ">=" if how == "at least" else "<="
        text = f"#12 {mine.split()[0]} {what} {sign} {factor:g}x {name}"
        check = _at_least if how == "at least" else _at_most
        goal = check(text, _get(by, mine, key), _get(by, peer, key), unit, factor)
        why = _missing(by, (mine, peer), key)
        if why is not None:
            goal["why"] = why
        out.append(goal)
    return out


PEER_GOALS = (
    ("obfs4", "o4p", "obfs4proxy"),
    ("shadow", "ss", "ss-libev"),
    ("obfs2", "o4p", "obfs4proxy"),
    ("obfs3", "o4p", "obfs4proxy"),
    ("meek", "o4p/ptd", "obfs4proxy meek_lite (same server)"),
)
"""Transports whose throughput and latency must match their deployed peer's (row prefix, impl, name)."""


def _peer_row(transport: str, peer: str) -> str:
    """The row of a PEER_GOALS peer: ``peer`` is a whole pair (``o4p/ptd``) or one side for both."""
    return f"{transport} {peer}" if "/" in peer else f"{transport} {peer}/{peer}"


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
        theirs = _peer_row(transport, peer)
        for key, check, text, unit in (
            ("mib_cpu_s", _at_least, f"{transport} MiB/CPU-s >= {name}'s", "MiB/CPU-s"),
            ("lat_median_ms", _at_most, f"{transport} connect+echo latency (median) <= {name}'s", "ms"),
        ):
            goal = check(text, _get(by, mine, key), _get(by, theirs, key), unit)
            why = _missing(by, (mine, theirs), key)
            if why is not None:
                goal["why"] = why
            out.append(goal)
    return out + _operator_goals(by) + per_connection_goals(by)


OPERATOR_ROWS = ("shadow-darkstar ptd/ptd", "Starbridge ptd/ptd")
"""Issue 11: measured against our Shadowsocks AES-256-GCM (throughput) and our obfs4 (server setups)."""


def compared_rows() -> list[tuple[str, str]]:
    """Every pair of rows some goal compares (the bench measures each pair side by side)."""
    pairs = [("plain ptd/ptd", "socat")]
    pairs += [(mine, peer) for _key, mine, peer, _how, _factor, _name in PER_CONNECTION_GOALS]
    for transport, peer, _name in PEER_GOALS:
        pairs.append((f"{transport} ptd/ptd", _peer_row(transport, peer)))
    for row in OPERATOR_ROWS:
        pairs += [(row, "shadow-aes256gcm ptd/ptd"), (row, "obfs4 ptd/ptd")]
    return pairs


def _operator_goals(by: Mapping[str, Result]) -> list[dict[str, Any]]:
    """DarkStar rows against our Shadowsocks AES-256-GCM (throughput) and obfs4 (server setups)."""
    out = []
    for row in OPERATOR_ROWS:
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
    lines = ["Goals (ours vs the peer's figure, and the bound the goal sets when it is not the peer's figure itself):"]
    for g in items:
        ratio, peer, bound = g.get("ratio"), g.get("peer"), g.get("against")
        line = f"  {g['status']:<4}  {g['goal']:<{width}}  {num(g['figure'])} vs {num(peer)} {g['unit']}"
        if bound is not None and peer is not None and bound != peer:
            line += f" (bound {num(bound)})"
        if ratio is not None and peer is not None:
            line += f"  ratio {ratio:.2f}x"
        if g.get("why"):
            line += f"  ({g['why']})"
        lines.append(line)
    return "\n".join(lines)
