"""Soak test (not in CI): a client and a server ``ptdispatch`` process carry mixed load for as long
as asked -- long bulk streams, connection churn and garbage probes -- while RSS and open
descriptors of both processes are printed over time.  Run as ``scripts/soak --seconds 600``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from bench.procs import descendants, open_fds, rss_kib  # noqa: E402

SHADOW = {"password": "soak", "cipherName": "chacha20-ietf-poly1305"}
COMMAND = [sys.executable, "-m", "ptdispatch"]


@dataclass
class Counters:
    bulk_bytes: int = 0
    churned: int = 0
    failures: int = 0
    probes: int = 0


def _proc(pid: int) -> tuple[int, int]:
    """(RSS in KiB, open descriptors) of ``pid`` and its workers (``-workers``), summed."""
    pids = [pid, *descendants(pid)]
    return sum(rss_kib(p) for p in pids), sum(open_fds(p) for p in pids)


async def _echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(ConnectionError):
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    writer.close()


async def _start(*argv: str) -> tuple[asyncio.subprocess.Process, list[str]]:
    proc = await asyncio.create_subprocess_exec(
        *COMMAND,
        *argv,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    assert proc.stdout is not None
    lines: list[str] = []
    while not lines or not lines[-1].endswith("METHODS DONE"):
        raw = await asyncio.wait_for(proc.stdout.readline(), 30)
        if not raw:
            raise RuntimeError(f"ptdispatch {' '.join(argv)} exited: {lines}")
        lines.append(raw.decode().strip())
    return proc, lines


async def _bulk(port: int, counters: Counters, stop: asyncio.Event) -> None:
    block = os.urandom(64 * 1024)
    while not stop.is_set():
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            for _ in range(256):  # 16 MiB per connection, then a fresh one
                if stop.is_set():
                    break
                writer.write(block)
                await reader.readexactly(len(block))
                counters.bulk_bytes += len(block)
            writer.close()
        except (OSError, asyncio.IncompleteReadError):
            counters.failures += 1
            await asyncio.sleep(0.5)


async def _churn(port: int, counters: Counters, stop: asyncio.Event, rate: float) -> None:
    while not stop.is_set():
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 10)
            writer.write(b"ping")
            await asyncio.wait_for(reader.readexactly(4), 10)
            writer.close()
            counters.churned += 1
        except (OSError, TimeoutError, asyncio.IncompleteReadError):
            counters.failures += 1
        await asyncio.sleep(1 / rate)


async def _probe(port: int, counters: Counters, stop: asyncio.Event) -> None:
    """Garbage straight at the server transport, dropped after a moment."""
    while not stop.is_set():
        with contextlib.suppress(OSError):
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(os.urandom(int.from_bytes(os.urandom(2), "big") % 2048))
            await asyncio.sleep(0.5)
            writer.transport.abort()
            counters.probes += 1
        await asyncio.sleep(0.05)


async def soak(args: argparse.Namespace) -> int:
    echo = await asyncio.start_server(_echo, "127.0.0.1", 0)
    target = echo.sockets[0].getsockname()[1]
    state = Path(tempfile.mkdtemp(prefix="ptdispatch-soak-"))
    name = args.transport
    server_opts = json.loads(args.options) if args.options else SHADOW if name == "shadow" else {}
    server, lines = await _start(
        "-server", "-transport", name, "-bindaddr", f"{name}-127.0.0.1:0", "-target", f"127.0.0.1:{target}",
        "-state", str(state / "server"), "-options", json.dumps(server_opts), *args.server_flags.split(),
    )  # fmt: skip
    words = next(line.split(" ") for line in lines if line.startswith("SMETHOD "))
    options: dict[str, object] = {"serverAddress": words[2]}
    if name == "meeklite":  # its url names the server (plain HTTP here, as behind a CDN)
        options = {"url": f"http://{words[2]}/"}
    if len(words) > 3:
        for item in words[3].removeprefix("ARGS:").split(","):
            key, _, value = item.partition("=")
            options[key] = value
    if name == "shadow" and not args.options:
        options.update(SHADOW, target=f"127.0.0.1:{target}")
    client, lines = await _start(
        "-client", "-transport", name, "-mode", "transparent-TCP", "-options", json.dumps(options),
        "-state", str(state / "client"),
    )  # fmt: skip
    port = int(next(line for line in lines if line.startswith("CMETHOD ")).split(" ")[3].rpartition(":")[2])
    server_port = int(words[2].rpartition(":")[2])
    counters, stop = Counters(), asyncio.Event()
    tasks = [asyncio.ensure_future(_bulk(port, counters, stop)) for _ in range(args.bulk)]
    tasks += [asyncio.ensure_future(_churn(port, counters, stop, args.churn)) for _ in range(4)]
    tasks += [asyncio.ensure_future(_probe(server_port, counters, stop)) for _ in range(args.probers)]
    print(f"soak: {name}, {args.seconds} s, {args.bulk} bulk streams, 4x{args.churn}/s churn, {args.probers} probers")
    print("   time   client RSS KiB  fds   server RSS KiB  fds   bulk MiB  churned  probes  failures")
    started = time.monotonic()
    try:
        while (elapsed := time.monotonic() - started) < args.seconds:
            await asyncio.sleep(min(args.interval, max(0.1, args.seconds - elapsed)))
            (crss, cfd), (srss, sfd) = _proc(client.pid), _proc(server.pid)
            print(
                f"{time.monotonic() - started:7.0f}  {crss:14d} {cfd:5d}  {srss:14d} {sfd:5d}  "
                f"{counters.bulk_bytes >> 20:9d}  {counters.churned:7d}  {counters.probes:6d}  {counters.failures:8d}",
                flush=True,
            )
            if client.returncode is not None or server.returncode is not None:
                print("a dispatcher exited", file=sys.stderr)
                return 1
    finally:
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        for proc in (client, server):
            if proc.returncode is None:
                proc.terminate()
                await proc.wait()
        echo.close()
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(prog="scripts/soak", description=__doc__.split("\n\n")[0])
    transports = "obfs4 (default), obfs2, obfs3, shadow, meeklite, Starbridge or plain"
    parser.add_argument("--transport", default="obfs4", help=transports)
    parser.add_argument(
        "--options", help='the server\'s -options (JSON), e.g. \'{"cipherName": "DarkStar"}\' with --transport shadow'
    )
    parser.add_argument("--server-flags", default="", help="more flags for the server, e.g. '-workers 2'")
    parser.add_argument("--seconds", type=float, default=60.0, help="how long to run (default 60)")
    parser.add_argument("--interval", type=float, default=5.0, help="seconds between samples (default 5)")
    parser.add_argument("--bulk", type=int, default=2, help="concurrent bulk streams (default 2)")
    parser.add_argument("--churn", type=float, default=20.0, help="connections per second per churner (default 20)")
    parser.add_argument("--probers", type=int, default=2, help="concurrent garbage probers (default 2)")
    return asyncio.run(soak(parser.parse_args()))


if __name__ == "__main__":
    sys.exit(main())
