"""Bad input for the operator extensions, through the real command: Redis stopped and restarted
under load, and a burst of 10,000 replayed handshakes against two workers."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from pathlib import Path

import pytest

from tests.peers.dispatcher import client_hello, obfs4_roundtrip, obfs4_server
from tests.peers.managed import echo_server
from tests.peers.procs import free_port
from tests.peers.redis import RedisServer
from tests.peers.scrape import scrape, value

pytestmark = [pytest.mark.interop, pytest.mark.slow, pytest.mark.timeout(300)]


async def test_redis_stopped_and_restarted_under_load(tmp_path: Path) -> None:
    echo, eport = await echo_server()
    redis = RedisServer(tmp_path / "redis")
    redis.start()
    mport = free_port()
    try:
        args = ("-workers", "2", "-replayStore", redis.url, "-metrics", f"127.0.0.1:{mport}")
        async with obfs4_server(tmp_path, eport, *args) as server:
            done = 0
            failures: list[BaseException] = []
            stop_load = asyncio.Event()

            async def load() -> None:
                nonlocal done
                while not stop_load.is_set():
                    try:
                        await obfs4_roundtrip(server, 2000)
                        done += 1
                    except Exception as exc:  # counted, asserted below
                        failures.append(exc)

            tasks = [asyncio.create_task(load()) for _ in range(3)]
            await asyncio.sleep(1.0)
            assert value(await scrape(mport), "ptdispatch_replay_store_up", store="redis") == 1
            redis.stop()
            await asyncio.sleep(2.0)
            before_restart = done
            samples = await scrape(mport)
            assert value(samples, "ptdispatch_replay_store_up", store="redis") == 0
            redis.start()  # same port, empty
            deadline = time.monotonic() + 15
            back = False
            while time.monotonic() < deadline and not back:
                await server.more_lines(0.5)
                back = any("is back" in line for line in server.lines)
            await asyncio.sleep(1.0)
            stop_load.set()
            await asyncio.gather(*tasks)
            samples = await scrape(mport)
            await server.more_lines(0.3)
    finally:
        redis.stop()
    echo.close()
    assert not failures, failures[:3]
    assert done > before_restart > 0  # served all along
    warnings = [line for line in server.lines if line.startswith("LOG WARN") and "unreachable" in line]
    assert 1 <= len(warnings) <= 2, warnings  # once (per worker that noticed), not per connection
    assert back, "no worker said Redis was back"


async def test_ten_thousand_replays_refused_memory_bounded(tmp_path: Path) -> None:
    echo, eport = await echo_server()
    mport = free_port()
    count = int(os.environ.get("PTD_TEST_REPLAYS", "10000"))
    args = ("-workers", "2", "-metrics", f"127.0.0.1:{mport}")
    async with obfs4_server(tmp_path, eport, *args, level="WARN") as server:
        host, port = server.method("SMETHOD", "obfs4")
        hello = client_hello(server)
        reader, writer = await asyncio.open_connection(host, port)
        writer.write(hello)
        assert await asyncio.wait_for(reader.read(1), 10)  # accepted once
        writer.transport.abort()
        rss_before = tree_rss_kib(server.process.pid)

        async def replay(n: int) -> None:
            for _ in range(n):
                _, w = await asyncio.open_connection(host, port)
                w.write(hello)
                await w.drain()
                w.close()  # FIN after the data (an RST could drop it unread)

        started = time.monotonic()
        await asyncio.gather(*(replay(count // 50) for _ in range(50)))
        refused = 0.0
        while time.monotonic() - started < 200 and refused < count:
            await asyncio.sleep(0.5)
            refused = value(await scrape(mport), "ptdispatch_handshake_failures_total", reason="replay")
        rss_after = tree_rss_kib(server.process.pid)
        samples = await scrape(mport)
        await obfs4_roundtrip(server)  # still serving
    echo.close()
    assert refused == count
    assert value(samples, "ptdispatch_connections_opened_total") == 1  # only the original got through
    growth_mib = (rss_after - rss_before) / 1024
    print(f"{count} replays: refused {refused:.0f}, server RSS {rss_before / 1024:.1f} -> {rss_after / 1024:.1f} MiB")
    # The replay store is fixed-size; what grows is the refused connections themselves, each held open
    # until obfs4's close delay ends (30 s + up to 60 s, as obfs4proxy does): bounded by that delay.
    assert growth_mib < count * 32 / 1024, growth_mib


def tree_rss_kib(root: int) -> int:
    total = 0
    pids = [root]
    with contextlib.suppress(OSError):
        pids += [int(p) for p in Path(f"/proc/{root}/task/{root}/children").read_text().split()]
    for pid in pids:
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
    return total
