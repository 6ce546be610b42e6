"""Demo: a ptdispatch server and client on loopback per transport; push data through; show throughput.

Each transport runs as two real processes, exactly as a parent application would start them:

    ptdispatch -server -transport T -bindaddr T-127.0.0.1:0 -target 127.0.0.1:<echo> -state <dir>
    ptdispatch -client -transport T -options '{...SMETHOD ARGS..., "serverAddress": ...}'

then a SOCKS5 connection through the client carries --size MiB to an echo server and back.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import NoReturn

from python_socks.async_.asyncio import Proxy

from ptdispatch.transports import registry

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from tests.peers.dispatcher import running  # noqa: E402
from tests.peers.managed import echo_handler as echo  # noqa: E402

CLIENT_OPTIONS = {"shadow": {"password": "demo password", "cipherName": "chacha20-ietf-poly1305"}}
SERVER_OPTIONS = CLIENT_OPTIONS
UNDER_CLIENT_ONLY = "obfs4"
"""The server transport the demo runs under a client-only one (Optimizer, over this one child)."""
CHUNK = 256 * 1024


def available(*, aliases: bool = True) -> list[str]:
    """Every transport name we have; without ``aliases``, each transport once (meek_lite and meek
    are meeklite)."""
    names, seen = [], set()
    for name in registry.names():
        try:
            spec = registry.lookup(name)
        except ImportError:
            continue
        if spec is not None and (aliases or id(spec) not in seen):
            seen.add(id(spec))
            names.append(name)
    return names


def client_options(name: str, server_args: dict[str, str], host: str, port: int) -> dict[str, object]:
    """What a client of ``name`` needs: the server's SMETHOD ARGS and where it listens."""
    spec = registry.lookup(name)
    if spec is not None and spec.name == "meeklite":  # meek: the url names the server
        return {"url": f"http://{host}:{port}/"}
    options: dict[str, object] = {**CLIENT_OPTIONS.get(name, {}), **server_args, "serverAddress": f"{host}:{port}"}
    if spec is not None and spec.client_only:  # Optimizer over one child, the server's own transport
        return {"strategy": "first", "transports": [{"name": UNDER_CLIENT_ONLY, "config": options}]}
    return options


class Progress:
    """A one-line progress bar on a terminal, a few plain lines otherwise."""

    def __init__(self, label: str, total: int) -> None:
        self.label, self.total, self.start = label, total, time.perf_counter()
        self.tty = sys.stdout.isatty()
        self.next_line = 0.25

    def update(self, done: int) -> None:
        frac = done / self.total
        rate = done / max(time.perf_counter() - self.start, 1e-9) / 2**20
        if self.tty:
            bar = "#" * int(frac * 30)
            print(f"\r  {self.label:<7} [{bar:<30}] {frac:6.1%} {rate:8.1f} MiB/s", end="", flush=True)
        elif frac >= self.next_line or done == self.total:
            print(f"  {self.label:<7} {frac:6.1%} {rate:8.1f} MiB/s", flush=True)
            self.next_line += 0.25

    def finish(self) -> float:
        elapsed = time.perf_counter() - self.start
        if self.tty:
            print()
        return elapsed


async def push(port: int, size: int, label: str) -> tuple[float, bool]:
    """Send ``size`` random bytes through SOCKS5 on ``port`` to the echo server; check they come back."""
    sock = await Proxy.from_url(f"socks5://127.0.0.1:{port}").connect("127.0.0.1", 9, timeout=30)
    reader, writer = await asyncio.open_connection(sock=sock, limit=1 << 20)
    block = os.urandom(CHUNK)
    sent_hash, got_hash = hashlib.blake2b(), hashlib.blake2b()
    progress = Progress(label, size)

    async def send() -> None:
        left = size
        while left:
            piece = block[: min(left, CHUNK)]
            sent_hash.update(piece)
            writer.write(piece)
            await writer.drain()
            left -= len(piece)

    async def receive() -> None:
        got = 0
        while got < size:
            data = await reader.read(1 << 20)
            if not data:
                raise ConnectionError(f"connection closed after {got} of {size} bytes")
            got_hash.update(data)
            got += len(data)
            progress.update(got)

    await asyncio.wait_for(asyncio.gather(send(), receive()), timeout=300)
    elapsed = progress.finish()
    writer.close()
    return elapsed, sent_hash.digest() == got_hash.digest()


async def demo_one(name: str, size: int, state: Path, echo_port: int) -> tuple[str, float, bool]:
    spec = registry.lookup(name)
    served = UNDER_CLIENT_ONLY if spec is not None and spec.client_only else name
    server_opts = json.dumps({served: SERVER_OPTIONS.get(served, {})})
    async with running(
        "-server", "-transport", served, "-bindaddr", f"{served}-127.0.0.1:0", "-target", f"127.0.0.1:{echo_port}",
        "-state", str(state / "server"), "-options", server_opts,
    ) as server:  # fmt: skip
        host, sport = server.method("SMETHOD", served)
        options = client_options(name, server.smethod_args(served), host, sport)
        async with running("-transport", name, "-options", json.dumps(options), "-state", str(state / "client")) as c:
            for line in (*server.lines, *c.lines):
                if line.startswith(("SMETHOD ", "CMETHOD ")):
                    print(f"  {line}")
            _, port = c.method("CMETHOD", name)
            elapsed, intact = await push(port, size, name)
    return name, elapsed, intact


class Parser(argparse.ArgumentParser):
    """argparse, but a bad argument is one line on stderr (no usage block), exit 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"demo: {message} (see --help)\n")


def transport_list(text: str) -> list[str]:
    """``--transport obfs4,shadow``: names separated by commas (any letter case), each one we have,
    in its canonical spelling."""
    known = available()
    canonical = {name.lower(): name for name in known}
    names = []
    for name in (part.strip() for part in text.split(",")):
        if name.lower() not in canonical:
            raise argparse.ArgumentTypeError(f"unknown transport {name!r}; known: {', '.join(known)}")
        names.append(canonical[name.lower()])
    return names


def mebibytes(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 65536:
        raise argparse.ArgumentTypeError(f"a whole number of MiB from 1 to 65536, not {text!r}")
    return int(text)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = Parser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--transport", type=transport_list, action="extend", metavar="NAME[,NAME]",
        help="transport(s) to demo, comma-separated or repeated (default: every one: "
        + ", ".join(available(aliases=False)) + ")",
    )  # fmt: skip
    parser.add_argument("--size", type=mebibytes, default=64, help="MiB to push through each transport (default 64)")
    return parser.parse_args(argv)


async def main(args: argparse.Namespace) -> int:
    names = list(dict.fromkeys(args.transport or available(aliases=False)))
    size = args.size * 2**20
    server = await asyncio.start_server(echo, "127.0.0.1", 0)
    echo_port = server.sockets[0].getsockname()[1]
    state = Path(tempfile.mkdtemp(prefix="ptdispatch-demo-"))
    results: list[tuple[str, float, bool]] = []
    failed: list[str] = []
    try:
        for name in names:
            print(f"\n{name}: server + client on loopback, {args.size} MiB through SOCKS5 to an echo server and back")
            try:
                results.append(await demo_one(name, size, state, echo_port))
            except Exception as exc:  # one line per failed transport, never a traceback
                print(f"  {name} failed: {type(exc).__name__}: {exc}", file=sys.stderr)
                failed.append(name)
    finally:
        server.close()
        shutil.rmtree(state, ignore_errors=True)
    print(f"\n{'transport':<10} {'MiB/s (both ways)':>18} {'data intact':>12}")
    for name, elapsed, intact in results:
        print(f"{name:<10} {2 * args.size / elapsed:>18.1f} {'yes' if intact else 'NO':>12}")
    for name in failed:
        print(f"{name:<10} {'failed':>18} {'-':>12}")
    return 0 if not failed and all(ok for _, _, ok in results) else 1


if __name__ == "__main__":
    try:
        sys.exit(asyncio.run(main(parse_args())))
    except KeyboardInterrupt:
        sys.exit(130)
