"""The UDP server's socket to -target behind a link slower than the stream feeding it, for real: in a
private network namespace (``unshare -rn``, no root needed where user namespaces are allowed), the
target is reached through a veth whose egress is shaped to 1 Mbit/s, so the socket's send buffer
fills and its sends fail with EAGAIN.  The event loop's transport keeps such datagrams in a queue of
its own; the server must not let that queue grow past ``WRITE_BUFFER_LIMIT``.  Each loop runs in a
child process; the test is skipped where the namespace, veth or ``tc`` is not available."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ptdispatch import api
from ptdispatch.logs import EventLog
from ptdispatch.net.addr import Address
from ptdispatch.transports import registry
from ptdispatch.transports.base import ServerContext
from ptdispatch.udp.framing import encode_frame
from ptdispatch.udp.server import TargetSession, UdpServerMethod
from ptdispatch.udp.writer import WRITE_BUFFER_LIMIT
from tests.unit.test_udp_sessions import Logs

SLOW_LINK = (
    "ip link set lo up"
    " && ip link add v0 type veth peer name v1"
    " && ip addr add 10.9.9.1/24 dev v0 && ip link set v0 up && ip link set v1 up"
    " && ip neigh add 10.9.9.2 lladdr 02:00:00:00:00:02 dev v0"
    " && tc qdisc add dev v0 root tbf rate 1mbit burst 10kb limit 20mb"
)
"""10.9.9.2 reachable only through v0, shaped to 1 Mbit/s (a static neighbour entry: no ARP; nothing
needs to receive what gets through)."""
SKIP = 77

RUNNER = """
import asyncio, json, os, sys
from tests.unit import test_udp_slow_link as t
if sys.argv[1] == "uvloop":
    import uvloop
    loop = uvloop.new_event_loop()
else:
    loop = asyncio.new_event_loop()
result = loop.run_until_complete(asyncio.wait_for(t.push_through_a_slow_link(), 60))
print("RESULT", json.dumps(result), flush=True)
os._exit(0)
"""

DATAGRAM = 1400
PUSHED = 6000
"""Datagrams pushed (8.4 MB, eight times the limit), as fast as loopback takes them."""


async def push_through_a_slow_link() -> dict[str, int]:
    """In the namespace: a plain server session to 10.9.9.2, fed as fast as it reads; what the
    socket to the target has queued, and how many datagrams were dropped, when the stream ends."""
    logs = Logs()
    method = UdpServerMethod("plain", Address("10.9.9.2", 9), False, {}, EventLog(logs))  # type: ignore[arg-type]
    result: dict[str, int] = {}

    class Watched(TargetSession):
        def eof_received(self) -> bool:
            assert self.udp is not None
            queued: int = self.udp.get_write_buffer_size()  # type: ignore[attr-defined]
            result.update(queued=queued, dropped=self.dropped)
            result["logged"] = sum("not keeping up" in m for m in logs.messages)
            return super().eof_received()

    spec = registry.lookup("plain")
    assert spec is not None
    server = spec.server({}, ServerContext(state_dir=Path()))
    listener = await api.listen(server, "127.0.0.1", 0, lambda: Watched(method), on_error=method.handshake_failed)
    reader, writer = await asyncio.open_connection("127.0.0.1", listener.sockets[0].getsockname()[1])
    frame = encode_frame(b"D" * DATAGRAM)
    writer.write(frame)  # the first one opens the session's socket
    await asyncio.sleep(0.1)
    chunk = frame * 100
    for _ in range(PUSHED // 100):
        writer.write(chunk)
        await writer.drain()
    writer.write_eof()
    await asyncio.wait_for(reader.read(), 10)  # the server read it all, then closed
    writer.close()
    listener.close()
    method.close()
    return result


def _in_a_slow_namespace(loop: str) -> dict[str, int]:
    if shutil.which("unshare") is None or shutil.which("ip") is None or shutil.which("tc") is None:
        pytest.skip("needs unshare, ip and tc")
    if subprocess.run(["unshare", "-rn", "true"], capture_output=True, check=False).returncode != 0:
        pytest.skip("no private network namespace here (user namespaces not allowed)")
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": f"{root}{os.pathsep}{root / 'src'}"}
    script = f'{SLOW_LINK} || exit {SKIP}; exec "$@"'
    done = subprocess.run(
        ["unshare", "-rn", "sh", "-c", script, "sh", sys.executable, "-c", RUNNER, loop],
        capture_output=True, text=True, timeout=90, cwd=root, env=env, check=False,
    )  # fmt: skip
    if done.returncode == SKIP:
        pytest.skip(f"cannot shape a veth in the namespace: {done.stderr.strip()[-300:]}")
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    assert lines, done.stdout + done.stderr[-3000:]
    result: dict[str, int] = json.loads(lines[0].removeprefix("RESULT "))
    return result


@pytest.mark.timeout(120)
@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_a_slow_link_to_the_target_drops_datagrams_instead_of_queueing_them(loop: str) -> None:
    result = _in_a_slow_namespace(loop)
    assert result["queued"] <= WRITE_BUFFER_LIMIT + DATAGRAM, result  # 8 MB without the limit
    assert result["dropped"] > PUSHED // 2, result  # the link took about 30 of them meanwhile
    assert result["logged"] == 1, result
