"""TOR_PT_OUTBOUND_BIND_ADDRESS_V4 through the real command, in a private network namespace.

Two non-loopback addresses (10.9.0.1 and 10.9.0.2) are put on the namespace's lo; a PT 1.0 client
told to use 10.9.0.2 dials a listener on 10.9.0.1, which must see 10.9.0.2 as its peer.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import CI, need_binary
from tests.peers.tor import confinement_prefix

DRIVER = r"""
import asyncio, json, os, struct, subprocess, sys, tempfile
subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
for a in ("10.9.0.1/32", "10.9.0.2/32"):
    subprocess.run(["ip", "addr", "add", a, "dev", "lo"], check=True)

async def main():
    peers = []
    def handle(reader, writer):
        peers.append(writer.get_extra_info("peername")[0])
        writer.close()
    server = await asyncio.start_server(handle, "10.9.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith("TOR_PT_")}
    env.update(TOR_PT_MANAGED_TRANSPORT_VER="1", TOR_PT_STATE_LOCATION=tempfile.mkdtemp(),
               TOR_PT_CLIENT_TRANSPORTS="plain", TOR_PT_OUTBOUND_BIND_ADDRESS_V4="10.9.0.2",
               TOR_PT_OUTBOUND_BIND_ADDRESS_V6="[2001:db8::4]")
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "ptdispatch", env=env,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)
    lines = []
    try:
        while (line := (await asyncio.wait_for(proc.stdout.readline(), 20)).decode().strip()) != "CMETHODS DONE":
            lines.append(line)
            assert line, lines
        cport = int(next(l for l in lines if l.startswith("CMETHOD ")).rsplit(":", 1)[1])
        reader, writer = await asyncio.open_connection("127.0.0.1", cport)
        writer.write(b"\x05\x01\x00" + b"\x05\x01\x00\x01" + bytes((10, 9, 0, 1)) + struct.pack(">H", port))
        reply = await asyncio.wait_for(reader.readexactly(12), 10)
        writer.close()
        for _ in range(100):
            if peers:
                break
            await asyncio.sleep(0.02)
    finally:
        proc.terminate()
        await proc.wait()
    print(json.dumps({"lines": lines, "reply": reply.hex(), "peers": peers}))

asyncio.run(main())
"""


def test_client_dials_from_the_outbound_bind_address() -> None:
    need_binary("ip")
    prefix = confinement_prefix()
    if prefix is None:
        if CI:
            pytest.fail("no private network namespace can be made (unshare --net)")
        pytest.skip("no private network namespace can be made (unshare --net)")
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run(
        [*prefix, sys.executable, "-c", DRIVER], cwd=root, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["reply"].startswith("0500" + "0500"), result  # method ok, then CONNECT succeeded
    assert result["peers"] == ["10.9.0.2"], result
