"""``python -m bench.profile``: where a connection's CPU goes, by phase, for each proxy pair.

For each row a pair is started as ``python -m bench`` starts it, then ``--count`` fresh
connections are made one after another (connect, SOCKS5 if any, one-byte echo, close):

1. without a profiler: user and system CPU per connection of the client and of the server
   process, from ``/proc`` (this works for the peers too: obfs4proxy, ss-libev, the floor);
2. for ptdispatch rows, again under cProfile (``bench._profiled``, switched on by signal after
   start-up), and the profiled Python time is split into phases by the callback each piece of
   work ran under (see :data:`ROOTS`).

cProfile slows Python calls down, so its microseconds are larger than the unprofiled ones: read
the phases as shares, and the unprofiled figure as the cost.  Both are CPU time, so other load on
the machine disturbs them much less than wall-clock latency.
"""

from __future__ import annotations

import argparse
import os
import pstats
import signal
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from . import load, peers
from .procs import CLK_TCK, _stat_fields, context_switches, cpu_seconds, stop
from .rows import Pair, all_rows, select

DEFAULT_ROWS = ",".join(
    [
        "plain ptd/ptd",
        "shadow ptd/ptd",
        "shadow ss/ss",
        "shadow floor/floor",
        "obfs2 ptd/ptd",
        "obfs2 o4p/o4p",
        "obfs4 ptd/ptd",
        "obfs4 o4p/o4p",
    ]
)

# Event-loop callbacks (functions no Python code called: uvloop is C), by (module stem, function),
# and the phase their inclusive time counts for.  EngineProtocol.data_received is split further:
# what it spends in _establish is splice set-up, what it hands to the relay is relay, the rest is
# the transport handshake.
ROOTS: dict[tuple[str, str], str] = {
    ("server", "connection_made"): "SOCKS",
    ("server", "data_received"): "SOCKS",
    ("server", "_connect"): "dial",
    ("accept", "_run"): "dial",
    ("adapter", "factory"): "handshake",
    ("adapter", "connection_made"): "handshake",
    ("adapter", "data_received"): "handshake",
    ("app", "factory"): "splice set-up",
    ("backends", "accepted"): "splice set-up",
    ("accept", "connection_made"): "splice set-up",
    ("relay", "data_received"): "relay",
    ("relay", "connection_lost"): "teardown",
    ("relay", "eof_received"): "teardown",
    ("accept", "connection_lost"): "teardown",
    ("adapter", "connection_lost"): "teardown",
    ("adapter", "eof_received"): "teardown",
    ("server", "connection_lost"): "teardown",
    ("server", "eof_received"): "teardown",
    ("handshake", "_refill"): "made ahead",
    ("weakref", "__setitem__"): "event loop",
    ("weakref", "remove"): "event loop",
    ("_weakrefset", "_remove"): "event loop",
}
SPLIT: dict[tuple[str, str], str] = {("adapter", "_establish"): "splice set-up", ("relay", "data_received"): "relay"}
PHASE_ORDER = ["SOCKS", "dial", "handshake", "splice set-up", "relay", "teardown", "made ahead", "event loop", "other"]


def _proc_cpu(pid: int) -> tuple[float, float]:
    """(user, system) CPU seconds of ``pid`` and its reaped children."""
    fields = _stat_fields(pid)
    if fields is None:
        return 0.0, 0.0
    user = int(fields[11]) + int(fields[13])
    system = int(fields[12]) + int(fields[14])
    return user / CLK_TCK, system / CLK_TCK


def _events(pid: int) -> tuple[int, int, int]:
    """(minor page faults, sleeps, preemptions) of ``pid`` so far."""
    fields = _stat_fields(pid)
    return (int(fields[7]) if fields is not None else 0, *context_switches([pid]))


def _connections(pair: Pair, count: int) -> None:
    dial = load.via_entry(pair.entry)
    for _ in range(count):
        dial()


def measure_cpu(pair: Pair, count: int) -> dict[str, float]:
    """Microseconds of user and system CPU per connection, client and server."""
    sides = {"client": pair.client[0].proc.pid, "server": pair.server[0].proc.pid}
    before = {name: _proc_cpu(pid) for name, pid in sides.items()}
    events = {name: _events(pid) for name, pid in sides.items()}
    precise = {name: cpu_seconds([pid]) for name, pid in sides.items()}
    start = time.perf_counter()
    _connections(pair, count)
    wall = time.perf_counter() - start
    time.sleep(0.2)
    out: dict[str, float] = {"wall_ms": wall / count * 1000}
    for name, pid in sides.items():
        user, system = (a - b for a, b in zip(_proc_cpu(pid), before[name], strict=True))
        out[f"{name}_user_us"] = user / count * 1e6
        out[f"{name}_sys_us"] = system / count * 1e6
        out[f"{name}_us"] = (cpu_seconds([pid]) - precise[name]) / count * 1e6
        faults, voluntary, involuntary = (a - b for a, b in zip(_events(pid), events[name], strict=True))
        out[f"{name}_faults"] = faults / count
        out[f"{name}_switches"] = voluntary / count
        out[f"{name}_preempted"] = involuntary / count
    return out


def perf_dso(pair: Pair, pid: int, count: int, workdir: Path) -> str:
    """Share of ``pid``'s CPU samples by shared object (kernel, libpython, uvloop, libcrypto...)."""
    import subprocess

    data = workdir / f"perf-{pid}.data"
    rec = subprocess.Popen(
        ["perf", "record", "-q", "-F", "4999", "-p", str(pid), "-o", str(data)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(0.5)
    _connections(pair, count)
    rec.send_signal(signal.SIGINT)
    rec.wait(30)
    report = subprocess.run(
        ["perf", "report", "-i", str(data), "--sort", "dso", "--stdio", "-q"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    parts = []
    for line in report.splitlines():
        words = line.split()
        if len(words) >= 2 and words[0].endswith("%") and float(words[0][:-1]) >= 1.0:
            parts.append(f"{Path(words[1]).name.split('.cpython')[0]} {words[0]}")
    return ", ".join(parts)


def strace_counts(pair: Pair, pid: int, count: int, workdir: Path) -> str:
    """System calls per connection made by ``pid`` (all threads), most frequent first."""
    import subprocess

    out = workdir / f"strace-{pid}.txt"
    rec = subprocess.Popen(["strace", "-c", "-f", "-p", str(pid), "-o", str(out)], stderr=subprocess.DEVNULL)
    time.sleep(0.5)
    _connections(pair, count)
    time.sleep(0.2)
    rec.send_signal(signal.SIGINT)
    rec.wait(30)
    parts = []
    for line in out.read_text().splitlines():
        words = line.split()
        if len(words) >= 5 and words[0][0].isdigit() and words[-1] != "total":
            calls = int(words[3])
            if calls >= count // 2:
                parts.append(f"{words[-1]} {calls / count:.1f}")
    return ", ".join(parts)


def pyspy(pair: Pair, pid: int, count: int, workdir: Path, limit: int = 30) -> str:
    """py-spy samples of ``pid`` (idle excluded, native frames included): share by leaf function,
    and by the Python function each sample was under."""
    import collections
    import shutil
    import subprocess

    exe = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    out = workdir / f"pyspy-{pid}.txt"
    argv = [exe, "record", "--native", "-r", "1000", "-f", "raw", "-o", str(out), "-p", str(pid)]
    rec = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1.0)
    _connections(pair, count)
    rec.send_signal(signal.SIGINT)
    rec.wait(30)
    leaf: collections.Counter[str] = collections.Counter()
    python: collections.Counter[str] = collections.Counter()
    total = 0
    for line in out.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        frames = stack.split(";")
        total += int(n)
        leaf[frames[-1].split(" (")[0]] += int(n)
        py = [f for f in frames if ".py:" in f]
        python[py[-1].split(" (")[0] if py else "(no Python frame)"] += int(n)
    lines = [f"    {total} samples; by leaf frame:"]
    lines += [f"      {n / total:6.1%}  {name}" for name, n in leaf.most_common(limit)]
    lines.append("    by innermost Python function:")
    lines += [f"      {n / total:6.1%}  {name}" for name, n in python.most_common(limit)]
    return "\n".join(lines)


def _wait_file(path: Path, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if time.monotonic() > deadline:
            raise RuntimeError(f"no profile written to {path}")
        time.sleep(0.05)


def profile(pair: Pair, count: int, prefix: str) -> dict[str, pstats.Stats]:
    """Run ``count`` connections with cProfile on in both proxies; their stats by side."""
    sides = {"client": pair.client[0].proc.pid, "server": pair.server[0].proc.pid}
    for pid in sides.values():
        os.kill(pid, signal.SIGUSR1)
    time.sleep(0.2)
    _connections(pair, count)
    time.sleep(0.2)
    out = {}
    for name, pid in sides.items():
        os.kill(pid, signal.SIGUSR2)
        path = Path(f"{prefix}.{pid}.prof")
        _wait_file(path)
        out[name] = pstats.Stats(str(path))
    return out


def _label(func: tuple[str, int, str]) -> str:
    filename, _, name = func
    if filename == "~":
        return name
    return f"{Path(filename).stem}:{name}"


def top(stats: pstats.Stats, count: int, limit: int = 25) -> list[str]:
    """The functions with most own time, per connection (µs, profiled)."""
    table = stats.stats  # type: ignore[attr-defined]
    order = 1 if os.environ.get("PTD_PROFILE_BY_CALLS") else 2
    rows = sorted(table.items(), key=lambda kv: kv[1][order], reverse=True)[:limit]
    lines = []
    for func, (_, nc, tt, ct, _) in rows:
        own, incl, calls = tt / count * 1e6, ct / count * 1e6, nc / count
        lines.append(f"    {own:8.1f} own {incl:8.1f} incl {calls:6.1f} calls  {_label(func)}")
    return lines


def phases(stats: pstats.Stats, count: int) -> dict[str, float]:
    """Profiled µs per connection by phase, from the inclusive time of each event-loop callback."""
    table = stats.stats  # type: ignore[attr-defined]
    out: dict[str, float] = {"total": sum(v[2] for v in table.values()) / count * 1e6}
    for func, (_, _, _, ct, callers) in table.items():
        if callers:
            continue  # called by Python code: counted in its caller
        key = (Path(func[0]).stem, func[2])
        phase = ROOTS.get(key, "other")
        if key == ("adapter", "data_received"):
            for child, child_phase in SPLIT.items():
                part = _called_from(table, child, func)
                ct -= part
                out[child_phase] = out.get(child_phase, 0.0) + part / count * 1e6
        out[phase] = out.get(phase, 0.0) + ct / count * 1e6
    return out


def _called_from(table: dict, child: tuple[str, str], parent: tuple[str, int, str]) -> float:  # type: ignore[type-arg]
    """Inclusive time of the function ``child`` (stem, name) when called from ``parent``."""
    total = 0.0
    for func, (_, _, _, _, callers) in table.items():
        if (Path(func[0]).stem, func[2]) == child and parent in callers:
            total += callers[parent][3]
    return total


def main(argv: Sequence[str] | None = None) -> int:
    about = __doc__.split("\n\n")[0] if __doc__ else None
    p = argparse.ArgumentParser(prog="python -m bench.profile", description=about)
    p.add_argument("--only", default=DEFAULT_ROWS, help="rows, as for python -m bench --only")
    p.add_argument("--count", type=int, default=500, help="connections per measurement")
    p.add_argument("--no-profile", action="store_true", help="CPU from /proc only")
    p.add_argument("--top", type=int, default=0, help="also print the N functions with most own time")
    p.add_argument("--strace", action="store_true", help="also count each side's system calls per connection")
    p.add_argument("--pyspy", action="store_true", help="also sample the server with py-spy (own time by function)")
    p.add_argument("--perf", action="store_true", help="also sample each side with perf (native time by library)")
    p.add_argument("--phases", action="store_true", help="also time each step of a connection from the load generator")
    args = p.parse_args(argv)
    rows = select(all_rows(), args.only)
    peers.PTD = [sys.executable, "-m", "bench._profiled"]
    with tempfile.TemporaryDirectory(prefix="ptdispatch-profile-") as tmp:
        workdir = Path(tmp)
        os.environ["PTD_PROFILE_OUT"] = str(workdir / "prof")
        root = str(Path(__file__).resolve().parent.parent)
        os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))
        target = peers.target(workdir)
        try:
            for row in rows:
                why = row.available()
                if why is not None:
                    print(f"{row.name}: skipped ({why})")
                    continue
                _one(row, target, workdir, args)
        finally:
            stop([target.proc])
    return 0


def _one(row: object, target: peers.Side, workdir: Path, args: argparse.Namespace) -> None:
    from .rows import Row

    assert isinstance(row, Row)
    started: list[peers.Side] = []
    rowdir = workdir / row.name.replace(" ", "_").replace("/", "-")
    rowdir.mkdir()
    try:
        pair = row.setup(rowdir, target, started)
        _connections(pair, 50)  # warm-up
        cpu = measure_cpu(pair, args.count)
        print(
            f"{row.name}: {cpu['wall_ms']:.3f} ms/conn wall; "
            f"client {cpu['client_us']:.0f} µs ({cpu['client_user_us']:.0f} user + {cpu['client_sys_us']:.0f} sys); "
            f"server {cpu['server_us']:.0f} µs ({cpu['server_user_us']:.0f} user + {cpu['server_sys_us']:.0f} sys)",
            flush=True,
        )
        print(
            "  per connection: "
            + "; ".join(
                f"{side} {cpu[side + '_faults']:.1f} page faults, {cpu[side + '_switches']:.1f} sleeps, "
                f"{cpu[side + '_preempted']:.1f} preemptions"
                for side in ("client", "server")
            ),
            flush=True,
        )
        if args.phases:
            medians = load.phase_medians(pair.entry, args.count)
            parts = " | ".join(f"{name} {us:.0f}" for name, us in medians.items())
            print(f"  wall µs (medians): {parts} | total {sum(medians.values()):.0f}", flush=True)
        if args.perf:
            for side in (*pair.client, *pair.server):
                print(f"  perf {side.proc.name}: {perf_dso(pair, side.proc.pid, args.count, rowdir)}", flush=True)
        if args.pyspy:
            for side in (*pair.client, *pair.server):
                print(f"  py-spy {side.proc.name}:\n{pyspy(pair, side.proc.pid, args.count, rowdir)}", flush=True)
        if args.strace:
            for side in (*pair.client, *pair.server):
                counts = strace_counts(pair, side.proc.pid, 200, rowdir)
                print(f"  syscalls/conn {side.proc.name}: {counts}", flush=True)
        if args.no_profile or "ptd/ptd" not in row.name:
            return
        stats = profile(pair, args.count, os.environ["PTD_PROFILE_OUT"])
        for name, st in stats.items():
            split = phases(st, args.count)
            total = split.pop("total")
            parts = " | ".join(f"{k} {split.get(k, 0.0):.0f}" for k in PHASE_ORDER)
            print(f"  {name} profiled {total:.0f} µs: {parts}")
            if args.top:
                print("\n".join(top(st, args.count, args.top)))
    finally:
        stop([side.proc for side in reversed(started)])


if __name__ == "__main__":
    sys.exit(main())
