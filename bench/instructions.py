"""``python -m bench.instructions``: user-space instructions per server connection, counted by callgrind.

CPU seconds on a shared 2-core VM move by 10-30% from one run to the next; instruction counts
over a few hundred connections move by a few percent at most (fewer let start-up differences
in).  So this is the measure to compare two versions of a server's per-connection path, or a
server with the floor: the server runs under ``valgrind --tool=callgrind`` (which follows
``fork``, so ``-workers`` counts every worker), its client outside it; after a warm-up,
``--count`` fresh connections (each proven by a one-byte echo) are made one at a time.  The
counts of a second run without them are subtracted (start-up, warm-up and exit cancel out).
Printed per connection: instructions (Ir) in all, and by object file (the interpreter, crypto,
uvloop, libc...); ``--top`` adds the functions.  ``--bytecodes`` counts instead the Python
bytecodes each function of a ptdispatch server executes (``bench/_opcodes.py``).

What it cannot see: the kernel (system calls, loopback TCP: a third to a half of a server's CPU
time here) and cache misses.  Servers: ``floor`` (bench/floor.py), ``ss`` (ss-server),
``ptd:TRANSPORT`` (ptdispatch -server; shadow, obfs2, obfs3, obfs4, plain...) and
``ptd:TRANSPORT:wN`` (with ``-workers N``).
"""

from __future__ import annotations

import argparse
import collections
import re
import shutil
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from . import peers
from .load import Entry, Socks, via_entry
from .procs import Proc, stop

START_TIMEOUT = 300.0
"""Seconds a server under callgrind may take to start (the interpreter's imports run 50x slower)."""
STOP_GRACE = 120.0
"""Seconds it may take to exit after SIGTERM (killed sooner, it would write no counts)."""
SOURCE = Path(__file__).resolve().parents[1] / "src" / "ptdispatch"
SHADOW = {"password": peers.SS_PASSWORD, "cipherName": peers.SS_CIPHER}
GROUPS = (
    ("interpreter", ("libpython", "/bin/python")),
    ("crypto", ("libcrypto", "libssl", "mbedcrypto", "cryptography", "_hashlib", "sodium", "nacl", "gmpy2", "libgmp")),
    ("uvloop", ("uvloop",)),
    ("libc", ("libc.so", "libm.so", "ld-linux")),
)


@dataclass
class Counts:
    """Self cost (Ir) by object file and by function, summed over processes."""

    objects: collections.Counter[str] = field(default_factory=collections.Counter)
    functions: collections.Counter[tuple[str, str]] = field(default_factory=collections.Counter)

    def total(self) -> int:
        return sum(self.objects.values())

    def groups(self) -> dict[str, int]:
        out = dict.fromkeys([name for name, _ in GROUPS] + ["other"], 0)
        for obj, cost in self.objects.items():
            name = next((n for n, marks in GROUPS if any(m in obj for m in marks)), "other")
            out[name] += cost
        return out


_NAME = re.compile(r"\((\d+)\)(?: (.*))?")
_POSITIONS = ("ob", "fl", "fi", "fe", "fn", "cob", "cfl", "cfi", "cfn")


def parse(path: Path, into: Counts) -> None:
    """Add the self costs of one callgrind output file (name compression and subposition
    compression handled; the cost line after ``calls=`` is the callee's, so it is skipped)."""
    names: dict[str, dict[str, str]] = {"ob": {}, "fl": {}, "fn": {}}
    obj = fn = "?"
    skip = False
    for line in path.read_text(errors="replace").splitlines():
        if not line:
            continue
        key, sep, value = line.partition("=")
        if sep and key in _POSITIONS:
            kind = "ob" if key.endswith("ob") else "fn" if key.endswith("fn") else "fl"
            m = _NAME.fullmatch(value)
            name = value
            if m is not None:
                if m.group(2) is not None:
                    names[kind][m.group(1)] = m.group(2)
                name = names[kind].get(m.group(1), m.group(1))
            if key == "ob":
                obj = name
            elif key == "fn":
                fn = name
            continue
        if sep and key == "calls":
            skip = True
            continue
        if line[0].isdigit() or line[0] in "+-*":
            parts = line.split()
            if len(parts) < 2:
                continue
            if skip:
                skip = False
                continue
            cost = int(parts[1])
            into.objects[obj] += cost
            into.functions[(obj.rsplit("/", 1)[-1], fn)] += cost


@dataclass
class Started:
    server: Proc
    entry: Entry
    others: list[Proc]


def _valgrind(out: Path) -> list[str]:
    return ["valgrind", "--tool=callgrind", "--dump-instr=no", f"--callgrind-out-file={out}/cg.%p"]


def start_pair(spec: str, target: peers.Side, workdir: Path, out: Path, bytecodes: bool = False) -> Started:
    """The server of ``spec`` under callgrind (or, a ptdispatch server with ``bytecodes``, under
    the opcode tracer), and a client for it (not measured)."""
    vg = _valgrind(out)
    to_target = Socks((target.host, target.port))
    if spec == "floor":
        server = peers.floor("server", target.port, workdir, prefix=vg, timeout=START_TIMEOUT)
        client = peers.floor("client", server.port, workdir)
        return Started(server.proc, Entry(client.host, client.port, to_target), [client.proc])
    if spec == "ss":
        binary = workdir / "ss-server"  # a copy: valgrind refuses the packaged one (it has file capabilities)
        shutil.copyfile(shutil.which("ss-server") or "ss-server", binary)
        binary.chmod(0o755)
        server = peers.ss_server(workdir, program=[*vg, str(binary)], timeout=START_TIMEOUT)
        client = peers.ss_local(server.port, workdir)
        return Started(server.proc, Entry(client.host, client.port, to_target), [client.proc])
    kind, _, rest = spec.partition(":")
    transport, _, workers = rest.partition(":")
    if kind != "ptd" or not transport or (workers and not re.fullmatch(r"w\d+", workers)):
        raise SystemExit(f"unknown server {spec!r}: give floor, ss, ptd:TRANSPORT or ptd:TRANSPORT:wN")
    options = SHADOW if transport == "shadow" else {}
    program = [*vg, *peers.PTD]
    # The workers must have time to exit on their own (SIGKILLed, they would write no counts).
    env = {"PTDISPATCH_SHUTDOWN_GRACE": str(STOP_GRACE / 2)}
    if bytecodes:
        program = [sys.executable, str(Path(__file__).with_name("_opcodes.py"))]
        env["PTD_BENCH_OPCODES"] = str(out / "opcodes.txt")
    extra = ["-workers", workers[1:]] if workers else []
    server = peers.ptd_server(
        transport,
        target.port,
        workdir,
        options,
        extra=extra,
        program=program,
        env=env,
        state=workdir / f"state-{transport}",
        timeout=START_TIMEOUT,
    )
    client_options = {**options, **server.args}
    if "iat-mode" in client_options:
        client_options["iat-mode"] = "0"
    socks = Socks((server.host, server.port))  # the obfs clients dial the SOCKS address; shadow its serverAddress
    if transport == "shadow":
        client_options["serverAddress"] = f"{server.host}:{server.port}"
        socks = to_target
    client = peers.ptd_client(transport, "socks5", client_options, workdir)
    return Started(server.proc, Entry(client.host, client.port, socks), [client.proc])


def parse_bytecodes(path: Path, into: Counts) -> None:
    """``bench/_opcodes.py``'s file: objects ``bytecodes`` and ``calls``; functions by place."""
    for line in path.read_text().splitlines():
        count, calls, where = line.split("\t", 2)
        where = where.replace(str(SOURCE) + "/", "")
        into.objects["bytecodes"] += int(count)
        into.objects["calls"] += int(calls)
        into.functions[("bytecodes", where)] += int(count)
        into.functions[("calls", where)] += int(calls)


def _run(spec: str, warmup: int, count: int, workdir: Path, bytecodes: bool) -> Counts:
    """One start of the pair: ``warmup + count`` connections, then a graceful stop; every process
    of the server (workers too) writes its counts as it exits."""
    out = Path(tempfile.mkdtemp(prefix=spec.replace(":", "-") + "-", dir=workdir))
    target = peers.target(workdir)
    started: Started | None = None
    try:
        started = start_pair(spec, target, workdir, out, bytecodes)
        dial = via_entry(started.entry)
        for _ in range(warmup + count):
            dial()
    finally:
        stop([*(started.others if started else []), target.proc])
        if started is not None:
            stop([started.server], grace=STOP_GRACE)  # under valgrind, exiting takes a while
    counts = Counts()
    for path in sorted(out.glob("cg.*")):
        parse(path, counts)
    if bytecodes and (out / "opcodes.txt").exists():
        parse_bytecodes(out / "opcodes.txt", counts)
    if not counts.objects:
        raise SystemExit(f"{spec}: no counts were written (see {out})")
    return counts


def measure(spec: str, count: int, warmup: int, workdir: Path, bytecodes: bool = False) -> Counts:
    """Per ``count`` connections: a run with them less a run without (start-up, warm-up and exit
    cancel out; callgrind_control cannot reach forked workers, so no counters are reset)."""
    base = _run(spec, warmup, 0, workdir, bytecodes)
    full = _run(spec, warmup, count, workdir, bytecodes)
    full.objects.subtract(base.objects)
    full.functions.subtract(base.functions)
    return full


def report_bytecodes(results: dict[str, Counts], count: int, top: int) -> str:
    lines = [f"{'server':<18} {'bytecodes/conn':>14} {'calls/conn':>10}"]
    for spec, counts in results.items():
        per = {kind: counts.objects[kind] / count for kind in ("bytecodes", "calls")}
        lines.append(f"{spec:<18} {per['bytecodes']:14,.1f} {per['calls']:10,.1f}")
    for spec, counts in results.items():
        lines += ["", f"{spec}: the {top or 30} functions that execute most bytecodes per connection (calls)"]
        ranked = [(where, n) for (kind, where), n in counts.functions.items() if kind == "bytecodes"]
        for where, n in sorted(ranked, key=lambda item: -item[1])[: top or 30]:
            lines.append(f"  {n / count:8,.1f} ({counts.functions[('calls', where)] / count:5.2f})  {where}")
    lines += ["", f"Python bytecodes of the event loop's thread, {count} connections each"]
    return "\n".join(lines)


def report(results: dict[str, Counts], count: int, top: int) -> str:
    names = [name for name, _ in GROUPS] + ["other"]
    lines = [f"{'server':<18} {'Ir/conn':>9}  " + "  ".join(f"{n:>11}" for n in names)]
    for spec, counts in results.items():
        groups = counts.groups()
        cells = "  ".join(f"{groups[n] / count:11,.0f}" for n in names)
        lines.append(f"{spec:<18} {counts.total() / count:9,.0f}  {cells}")
    if top:
        for spec, counts in results.items():
            lines += ["", f"{spec}: the {top} functions with most own instructions per connection"]
            for (obj, fn), cost in counts.functions.most_common(top):
                lines.append(f"  {cost / count:9,.0f}  {obj[:30]:<30}  {fn}")
    lines += ["", f"user space only, {count} connections each (kernel time and cache misses are not counted)"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    summary = __doc__.split("\n\n")[0] if __doc__ else ""
    p = argparse.ArgumentParser(prog="python -m bench.instructions", description=summary)
    p.add_argument("--servers", default="floor,ss,ptd:shadow", help="comma-separated: floor, ss, ptd:TRANSPORT[:wN]")
    p.add_argument("--count", type=int, default=200, help="connections measured per server (default 200)")
    p.add_argument("--warmup", type=int, default=30, help="connections made in both runs (default 30)")
    p.add_argument("--top", type=int, default=0, help="also list the N functions with most own instructions")
    p.add_argument(
        "--bytecodes",
        action="store_true",
        help="ptd servers only: count Python bytecodes by function (sys.settrace) instead",
    )
    args = p.parse_args(argv)
    if args.bytecodes:
        specs = [s.strip() for s in args.servers.split(",") if s.strip()]
        if not all(re.fullmatch(r"ptd:[\w-]+", s) for s in specs):
            print("--bytecodes counts ptdispatch servers without -workers: give --servers ptd:TRANSPORT,...")
            return 2
    elif shutil.which("valgrind") is None:
        print("valgrind (callgrind) is not installed: apt-get install valgrind", file=sys.stderr)
        return 2
    results: dict[str, Counts] = {}
    with tempfile.TemporaryDirectory(prefix="ptd-instructions-") as tmp:
        for spec in [s.strip() for s in args.servers.split(",") if s.strip()]:
            if spec == "ss" and shutil.which("ss-server") is None:
                print("ss: skipped (ss-server is not installed)")
                continue
            results[spec] = measure(spec, args.count, args.warmup, Path(tmp), args.bytecodes)
            if not args.bytecodes:
                print(f"{spec}: {results[spec].total() / args.count:,.0f} Ir per connection", flush=True)
    print()
    print((report_bytecodes if args.bytecodes else report)(results, args.count, args.top))
    return 0


if __name__ == "__main__":
    sys.exit(main())
