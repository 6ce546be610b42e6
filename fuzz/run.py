"""Run fuzz targets under atheris (libFuzzer): ``python -m fuzz.run [TARGET ...] [--seconds N]``.

Each target runs in its own process (atheris sets up once per process) with libFuzzer's
``-timeout=1`` (an input taking over 1 s is a finding), ``-rss_limit_mb`` (unbounded memory is a
finding) and ``-artifact_prefix=fuzz/crashers/<target>/`` (every finding is kept there as a
regression input, which the test suite replays).  Seeds come from ``fuzz/corpus/<target>/``; the
inputs libFuzzer finds interesting go to a work directory outside the repository
(``$PTDISPATCH_FUZZ_WORK``, default ``.fuzz-work/``), so repeated runs build on each other.
Prints one summary line per target: executions, coverage (libFuzzer's ``cov``/``ft``) and findings.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import re
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent
WORK = Path(os.environ.get("PTDISPATCH_FUZZ_WORK", ROOT.parent / ".fuzz-work"))
MAX_LEN = {"socks5-json": 70_000, "shadow-chunks": 40_000, "obfs4-frames": 20_000, "obfs4-handshake": 12_000}
DEFAULT_MAX_LEN = 10_000
RSS_LIMIT_MB = 1024
SPURIOUS_BELOW = 0.25
"""Seconds: a timeout input replaying faster than this every time was the machine stalling."""


@dataclass
class Result:
    target: str
    seconds: float
    executions: int
    coverage: int
    features: int
    corpus: int
    findings: list[str]
    returncode: int
    spurious: list[str]


def child(name: str, seconds: int, extra: list[str]) -> None:
    """Inside the fuzzing process: instrument ptdispatch, then hand the target to libFuzzer."""
    import atheris  # type: ignore[import-untyped]

    with atheris.instrument_imports(include=["ptdispatch", "fuzz"]):
        from fuzz import targets
    fn = targets.TARGETS[name]
    work = WORK / name
    work.mkdir(parents=True, exist_ok=True)
    crashers = targets.CRASHERS / name
    crashers.mkdir(parents=True, exist_ok=True)
    seeds = targets.CORPUS / name
    args = [
        sys.argv[0],
        f"-max_total_time={seconds}",
        "-timeout=1",
        f"-rss_limit_mb={RSS_LIMIT_MB}",
        f"-max_len={MAX_LEN.get(name, DEFAULT_MAX_LEN)}",
        f"-artifact_prefix={crashers}/",
        "-print_final_stats=1",
        *extra,
        str(work),
        *([str(seeds)] if seeds.is_dir() else []),
    ]
    atheris.Setup(args, fn)
    atheris.Fuzz()


_STATUS = re.compile(r"^#(\d+)\s+\w+\s+cov: (\d+) ft: (\d+) corp: (\d+)", re.M)
_ARTIFACT = re.compile(r"Test unit written to (\S+)")


def run_one(name: str, seconds: int, extra: list[str]) -> Result:
    """Fuzz ``name`` for ``seconds`` in a child process and summarize its libFuzzer output."""
    started = time.monotonic()
    command = [sys.executable, "-m", "fuzz.run", "--child", name, "--seconds", str(seconds), *extra]
    env = {**os.environ, "PYTHONPATH": str(ROOT.parent) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.run(
        command, cwd=ROOT.parent, env=env, capture_output=True, text=True, timeout=seconds + 120, check=False
    )
    log = proc.stderr
    (WORK / f"{name}.log").parent.mkdir(parents=True, exist_ok=True)
    (WORK / f"{name}.log").write_text(log)
    status = _STATUS.findall(log)
    execs, cov, ft, corp = (int(x) for x in status[-1]) if status else (0, 0, 0, 0)
    units = re.search(r"stat::number_of_executed_units: (\d+)", log)
    if units:
        execs = int(units.group(1))
    elapsed = round(time.monotonic() - started, 1)
    findings, spurious = _recheck(name, _ARTIFACT.findall(log))
    returncode = 0 if spurious and not findings else proc.returncode
    return Result(name, elapsed, execs, cov, ft, corp, findings, returncode, spurious)


def _recheck(name: str, artifacts: list[str]) -> tuple[list[str], list[str]]:
    """Split findings from spurious timeouts: a ``timeout-`` input that replays in well under the
    limit three times was a stall of this shared machine, not a hang; it is moved out of
    ``fuzz/crashers`` (to the work directory) and reported apart."""
    from fuzz.targets import TARGETS

    findings, spurious = [], []
    for artifact in artifacts:
        path = Path(artifact)
        if path.name.startswith("timeout-") and path.is_file():
            data = path.read_bytes()
            times = []
            for _ in range(3):
                begun = time.perf_counter()
                TARGETS[name](data)
                times.append(time.perf_counter() - begun)
            if max(times) < SPURIOUS_BELOW:
                moved = WORK / "spurious" / name / path.name
                moved.parent.mkdir(parents=True, exist_ok=True)
                path.replace(moved)
                spurious.append(f"{moved} ({max(times) * 1000:.1f} ms on replay)")
                continue
        findings.append(artifact)
    return findings, spurious


def _print(result: Result) -> None:
    found = f"  FINDINGS: {' '.join(result.findings)}" if result.findings else ""
    if result.spurious:
        found += f"  (spurious timeouts, machine load: {' '.join(result.spurious)})"
    print(
        f"{result.target:18s} {result.seconds:7.1f} s  {result.executions:9d} execs  cov {result.coverage:5d}  "
        f"ft {result.features:6d}  corpus {result.corpus:5d}  rc {result.returncode}{found}",
        flush=True,
    )


def table(results: list[Result]) -> str:
    """Results summed per target (several runs of one target add up) as a Markdown table."""
    merged: dict[str, Result] = {}
    for r in results:
        m = merged.setdefault(r.target, Result(r.target, 0.0, 0, 0, 0, 0, [], 0, []))
        m.seconds += r.seconds
        m.executions += r.executions
        m.coverage, m.features, m.corpus = max(m.coverage, r.coverage), max(m.features, r.features), r.corpus
        m.findings += r.findings
        m.spurious += r.spurious
        m.returncode = m.returncode or r.returncode
    rows = [
        "| target | wall s | executions | exec/s | cov | ft | corpus | findings | spurious timeouts |",
        "|---|---:|---:|---:|---:|---:|---:|---|---:|",
    ]
    for m in merged.values():
        found = ", ".join(Path(f).name for f in m.findings) or "none"
        rate = m.executions / m.seconds if m.seconds else 0
        rows.append(
            f"| {m.target} | {m.seconds:.0f} | {m.executions} | {rate:.0f} | {m.coverage} | {m.features} | "
            f"{m.corpus} | {found} | {len(m.spurious)} |"
        )
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/fuzz", description=__doc__.split("\n\n")[0])
    parser.add_argument("targets", nargs="*", help="targets to run (default: all)")
    parser.add_argument("--seconds", type=int, default=60, help="seconds per target (default 60)")
    parser.add_argument("--list", action="store_true", help="list the targets and exit")
    parser.add_argument("--jobs", type=int, default=1, help="targets run side by side (default 1)")
    parser.add_argument("--json", type=Path, help="append one JSON line per target to this file")
    parser.add_argument(
        "--table", type=Path, nargs="+", metavar="FILE", help="print --json files as one table (summed per target)"
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args, extra = parser.parse_known_args(argv)
    if args.child:
        child(args.child, args.seconds, extra)
        return 0
    if args.table:
        lines = [line for path in args.table for line in path.read_text().splitlines() if line]
        rows = [{"spurious": [], **json.loads(line)} for line in lines]
        print(table([Result(**row) for row in rows]))
        return 0
    from fuzz.targets import TARGETS

    if args.list:
        print("\n".join(TARGETS))
        return 0
    unknown = [t for t in args.targets if t not in TARGETS]
    if unknown:
        parser.error(f"unknown target(s) {', '.join(unknown)}; --list shows them")
    failed = 0
    with concurrent.futures.ThreadPoolExecutor(max(1, args.jobs)) as pool:
        runs = [pool.submit(run_one, name, args.seconds, extra) for name in args.targets or list(TARGETS)]
        for run in runs:
            result = run.result()
            _print(result)
            if args.json is not None:
                with args.json.open("a") as out:
                    out.write(json.dumps(asdict(result)) + "\n")
            failed += bool(result.findings or result.returncode)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
