"""-metrics, -workers and the shared replay store, through the real command."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
from pathlib import Path

import pytest

from ptdispatch import api
from tests.peers.dispatcher import (
    COMMAND,
    Dispatcher,
    client_hello,
    obfs4_roundtrip,
    obfs4_server,
    run_once,
    running,
    send_raw,
    stop,
)
from tests.peers.managed import echo_server
from tests.peers.procs import free_port
from tests.peers.scrape import scrape, value

pytestmark = pytest.mark.timeout(120)


async def test_metrics_single_process(tmp_path: Path) -> None:
    echo, eport = await echo_server()
    mport = free_port()
    async with obfs4_server(tmp_path, eport, "-metrics", f"127.0.0.1:{mport}") as server:
        for _ in range(3):
            await obfs4_roundtrip(server)
        await send_raw(server.method("SMETHOD", "obfs4"), os.urandom(9000), wait=0.3)  # a probe
        hello = client_hello(server)
        assert await send_raw(server.method("SMETHOD", "obfs4"), hello)
        assert not await send_raw(server.method("SMETHOD", "obfs4"), hello, wait=0.3)  # the replay
        _reader, writer = await asyncio.open_connection(*server.method("SMETHOD", "obfs4"))
        writer.close()  # a FIN before any byte: a health check, not a probe
        await asyncio.sleep(0.3)
        samples = await scrape(mport)
    echo.close()
    assert value(samples, "ptdispatch_connections_opened_total", transport="obfs4", role="server") == 4
    assert value(samples, "ptdispatch_connections_closed_total", transport="obfs4", role="server") == 4
    assert value(samples, "ptdispatch_data_bytes_total", transport="obfs4", dir="upstream") == 60_000
    assert value(samples, "ptdispatch_data_bytes_total", transport="obfs4", dir="downstream") == 60_000
    assert value(samples, "ptdispatch_handshake_failures_total", reason="probe") == 1
    assert value(samples, "ptdispatch_handshake_failures_total", reason="replay") == 1
    assert value(samples, "ptdispatch_handshake_failures_total", reason="empty") == 1
    assert value(samples, "ptdispatch_handshake_duration_seconds_count", transport="obfs4") == 4
    assert value(samples, "ptdispatch_open_connections", transport="obfs4") == 0
    assert value(samples, "ptdispatch_build_info") == 1
    assert value(samples, "ptdispatch_workers") == 1  # a single process serves (an alert on 0 must not fire)
    labels = {v for (_n, lbl) in samples for _k, v in lbl}
    assert not any("127.0.0.1" in v for v in labels), labels  # no address ever becomes a label


async def test_metrics_port_taken_is_env_error(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code, out, err = await run_once(
            "-server", "-transport", "obfs4", "-bindaddr", "obfs4-127.0.0.1:0", "-target", "127.0.0.1:1",
            "-state", str(tmp_path), "-metrics", f"127.0.0.1:{port}",
        )  # fmt: skip
    assert code == 64
    assert out == ["VERSION 3.0"]
    assert len(err) == 1 and err[0].startswith(f"ENV-ERROR -metrics 127.0.0.1:{port}: cannot listen"), err


@pytest.mark.parametrize("value_", ["0", "abc"])
async def test_bad_workers_is_env_error(tmp_path: Path, value_: str) -> None:
    code, out, err = await run_once(
        "-server", "-transport", "obfs4", "-bindaddr", "obfs4-127.0.0.1:0", "-target", "127.0.0.1:1",
        "-state", str(tmp_path), "-workers", value_,
    )  # fmt: skip
    assert code == 64 and out == ["VERSION 3.0"]
    assert err[0].startswith(f"ENV-ERROR -workers '{value_}'"), err


def worker_pids(lines: list[str]) -> dict[int, int]:
    pids: dict[int, int] = {}
    for line in lines:
        found = re.search(r"worker (\d+) started \(pid (\d+)\)", line)
        if found:
            pids[int(found[1])] = int(found[2])
    return pids


def worker_of(lines: list[str], port: int) -> int | None:
    for line in lines:
        found = re.search(rf"worker (\d+): obfs4: connection from 127\.0\.0\.1:{port}$", line)
        if found:
            return int(found[1])
    return None


async def test_two_workers_one_identity_shared_replay_and_metrics(tmp_path: Path) -> None:
    echo, eport = await echo_server()
    mport = free_port()
    async with obfs4_server(tmp_path, eport, "-workers", "2", "-metrics", f"127.0.0.1:{mport}") as server:
        assert sum(line.startswith("SMETHOD obfs4 ") for line in server.lines) == 1
        assert len(worker_pids(server.lines)) == 2
        await asyncio.gather(*(obfs4_roundtrip(server) for _ in range(30)))
        hello = client_hello(server)
        address = server.method("SMETHOD", "obfs4")
        assert await send_raw(address, hello)
        replies = await asyncio.gather(*(send_raw(address, hello, wait=0.5) for _ in range(20)))
        assert not any(replies)  # refused by whichever worker got it
        await asyncio.sleep(0.5)
        samples = await scrape(mport)
        await server.more_lines(0.5)
    echo.close()
    assert value(samples, "ptdispatch_connections_opened_total", transport="obfs4") == 31
    assert value(samples, "ptdispatch_handshake_failures_total", reason="replay") == 20
    assert value(samples, "ptdispatch_workers") == 2
    per_worker = [value(samples, "ptdispatch_worker_connections_opened_total", worker=str(i)) for i in (0, 1)]
    assert sum(per_worker) == 31 and min(per_worker) > 0, per_worker
    served = [line for line in server.lines if ": obfs4: connection from" in line]
    share = sum("worker 0:" in line for line in served) / len(served)
    assert 0.1 < share < 0.9, share  # both workers accept (the kernel spreads by 4-tuple)


STREAM = 8 << 20


async def stream(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> int:
    """Echo ``STREAM`` bytes through in 64 KiB steps; how many came back before the connection ended."""
    moved = 0
    chunk = os.urandom(65536)
    try:
        while moved < STREAM:
            writer.write(chunk)
            await reader.readexactly(len(chunk))
            moved += len(chunk)
            await asyncio.sleep(0.005)
    except (ConnectionError, asyncio.IncompleteReadError):
        pass
    return moved


async def test_killed_worker_ends_its_connections_only_and_comes_back(tmp_path: Path) -> None:
    echo, eport = await echo_server()
    async with obfs4_server(tmp_path, eport, "-workers", "2", "-unsafeLogging") as server:
        pids = worker_pids(server.lines)
        address, args = server.method("SMETHOD", "obfs4"), server.smethod_args("obfs4")
        conns = []
        for _ in range(20):
            reader, writer = await api.open_connection("obfs4", address, args)
            writer.write(b"x")
            assert await asyncio.wait_for(reader.readexactly(1), 10) == b"x"
            conns.append((reader, writer, writer.get_extra_info("sockname")[1]))
        await server.more_lines(0.5)
        where = {port: worker_of(server.lines, port) for *_, port in conns}
        assert set(where.values()) == {0, 1}, where
        picked = [c for w in (0, 1) for c in [c for c in conns if where[c[2]] == w][:2]]
        rest = [c for c in conns if c not in picked]
        streams = {port: asyncio.create_task(stream(reader, writer)) for reader, writer, port in picked}
        await asyncio.sleep(0.3)  # mid-transfer
        os.kill(pids[0], signal.SIGKILL)
        for port, task in streams.items():
            moved = await asyncio.wait_for(task, 60)
            if where[port] == 0:
                assert moved < STREAM, "a stream on the killed worker went on"
            else:
                assert moved == STREAM, "a stream on the other worker was cut"
        for _reader, writer, _port in picked:
            writer.close()
        for reader, writer, port in rest:
            if where[port] == 0:
                assert await asyncio.wait_for(reader.read(), 10) == b""
            else:
                writer.write(b"still here")
                assert await asyncio.wait_for(reader.readexactly(10), 10) == b"still here"
            writer.close()
        for _ in range(50):
            await server.more_lines(0.2)
            if len(worker_pids(server.lines)) == 2 and worker_pids(server.lines)[0] != pids[0]:
                break
        assert any(f"worker 0 (pid {pids[0]}) was killed by SIGKILL" in line for line in server.lines)
        assert worker_pids(server.lines)[0] != pids[0]
        await asyncio.gather(*(obfs4_roundtrip(server) for _ in range(10)))
    echo.close()


async def test_stdin_close_stops_every_worker(tmp_path: Path) -> None:
    echo, eport = await echo_server()
    async with obfs4_server(tmp_path, eport, "-workers", "2", "-exit-on-stdin-close") as server:
        pids = worker_pids(server.lines)
        assert server.process.stdin is not None
        server.process.stdin.close()
        assert await asyncio.wait_for(server.process.wait(), 10) == 0
    echo.close()
    for pid in pids.values():
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


async def test_workers_over_pt1_environment(tmp_path: Path) -> None:
    echo, eport = await echo_server()
    env = {
        "TOR_PT_MANAGED_TRANSPORT_VER": "1", "TOR_PT_STATE_LOCATION": str(tmp_path / "state"),
        "TOR_PT_SERVER_TRANSPORTS": "obfs4", "TOR_PT_SERVER_BINDADDR": "obfs4-127.0.0.1:0",
        "TOR_PT_ORPORT": f"127.0.0.1:{eport}", "PTDISPATCH_WORKERS": "2", "PTDISPATCH_IPC_LOG_LEVEL": "INFO",
    }  # fmt: skip
    async with running(env=env) as server:
        assert sum(line.startswith("SMETHOD obfs4 ") for line in server.lines) == 1
        await asyncio.gather(*(obfs4_roundtrip(server) for _ in range(4)))
    echo.close()


async def test_parent_killed_takes_the_workers_with_it(tmp_path: Path) -> None:
    echo, eport = await echo_server()
    async with obfs4_server(tmp_path, eport, "-workers", "2") as server:
        pids = worker_pids(server.lines)
        server.process.kill()  # SIGKILL: no chance to stop them; PR_SET_PDEATHSIG does
        await server.process.wait()
        for _ in range(50):
            alive = [pid for pid in pids.values() if _alive(pid)]
            if not alive:
                break
            await asyncio.sleep(0.1)
        assert not alive
    echo.close()


async def _obfs4_connections(server: Dispatcher, count: int) -> list[tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
    """``count`` open obfs4 connections, each with one byte echoed."""
    conns = []
    for _ in range(count):
        reader, writer = await api.open_connection(
            "obfs4", server.method("SMETHOD", "obfs4"), server.smethod_args("obfs4")
        )
        writer.write(b"x")
        assert await asyncio.wait_for(reader.readexactly(1), 10) == b"x"
        conns.append((reader, writer))
    return conns


async def test_sigterm_to_the_process_group_drains_every_worker(tmp_path: Path) -> None:
    """systemd (KillMode=control-group) and a terminal's Ctrl-C signal the whole group: each worker
    gets the signal as well as its parent.  The workers leave it to the parent, which asks each one
    to stop once, so every worker drains (logs "stopped") instead of taking the parent's request for
    a second signal and leaving at once."""
    echo, eport = await echo_server()
    proc = await asyncio.create_subprocess_exec(
        *COMMAND, "-server", "-transport", "obfs4", "-bindaddr", "obfs4-127.0.0.1:0",
        "-target", f"127.0.0.1:{eport}", "-state", str(tmp_path / "state"), "-ipcLogLevel", "INFO",
        "-workers", "2",
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
        start_new_session=True,  # a process group of its own, to signal as a whole
    )  # fmt: skip
    server = Dispatcher(proc)
    try:
        while "SMETHODS DONE" not in server.lines:
            assert await server.more_lines(timeout=0.5) or proc.returncode is None, server.lines
        conns = await _obfs4_connections(server, 6)
        pids = worker_pids(server.lines)
        os.kill(pids[0], signal.SIGTERM)  # the group's signal reaching a worker well before the parent's
        await server.more_lines(timeout=0.3)
        assert not any("worker 0: stopping" in line for line in server.lines)  # it left that to its parent
        os.killpg(proc.pid, signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 10) == 0
        await server.more_lines(timeout=2)
        for index in (0, 1):
            assert any(f"worker {index}: stopped (" in line for line in server.lines), server.lines
        assert any("stopped (SIGTERM)" in line and "worker" not in line for line in server.lines)
        for _, writer in conns:
            writer.close()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    echo.close()


def _children(pid: int) -> list[int]:
    return [
        int(child) for task in os.listdir(f"/proc/{pid}/task") for child in _read(f"/proc/{pid}/task/{task}/children")
    ]


def _read(path: str) -> list[str]:
    try:
        return Path(path).read_text().split()
    except OSError:
        return []


async def test_first_worker_lost_while_the_others_start_is_restarted(tmp_path: Path) -> None:
    echo, eport = await echo_server()
    proc = await asyncio.create_subprocess_exec(
        *COMMAND, "-server", "-transport", "obfs4", "-bindaddr", "obfs4-127.0.0.1:0",
        "-target", f"127.0.0.1:{eport}", "-state", str(tmp_path / "state"), "-ipcLogLevel", "INFO",
        "-workers", "3",
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    server = Dispatcher(proc)
    assert proc.stdout is not None
    try:
        async with asyncio.timeout(20):
            while (line := (await proc.stdout.readline()).decode().rstrip("\n")) != "SMETHODS DONE":
                assert line, server.lines
                server.lines.append(line)
                if "worker 1 started" in line:  # worker 0 is listening; the others are starting
                    first = worker_pids(server.lines)[0]
                    os.kill(first, signal.SIGKILL)
            server.lines.append(line)
        async with asyncio.timeout(10):
            while worker_pids(server.lines)[0] == first:
                server.lines.append((await proc.stdout.readline()).decode().rstrip("\n"))
        assert any(f"worker 0 (pid {first}) was killed by SIGKILL; restarting it" in line for line in server.lines)
        await server.more_lines(timeout=1.0)
        assert len(_children(proc.pid)) == 3
        await obfs4_roundtrip(server)
    finally:
        await stop(proc)
    echo.close()


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] not in "ZX"


async def test_client_workers_share_the_socks_port(tmp_path: Path) -> None:
    from tests.peers.obfs4proxy import socks5_connect

    echo, eport = await echo_server()
    async with obfs4_server(tmp_path, eport) as server:
        host, port = server.method("SMETHOD", "obfs4")
        options = json.dumps({**server.smethod_args("obfs4"), "serverAddress": f"{host}:{port}"})
        async with running(
            "-client", "-transport", "obfs4", "-options", options, "-workers", "2", "-ipcLogLevel", "INFO",
            "-state", str(tmp_path / "c"),
        ) as client:  # fmt: skip
            assert sum(line.startswith("CMETHOD obfs4 ") for line in client.lines) == 1
            for _ in range(12):
                reader, writer = await socks5_connect(client.method("CMETHOD", "obfs4"), ("127.0.0.1", eport))
                writer.write(b"ping")
                assert await asyncio.wait_for(reader.readexactly(4), 10) == b"ping"
                writer.close()
            await client.more_lines(0.5)
    echo.close()
    served = [line for line in client.lines if "worker" in line and "connection" in line]
    assert served


async def test_udp_client_workers_share_the_udp_port(tmp_path: Path) -> None:
    from tests.e2e.test_udp_e2e import hostport, smethod_args, spawn, udp_echo

    with udp_echo() as eport:
        server = await spawn(
            "-server", "-transport", "obfs4", "-mode", "transparent-UDP", "-bindaddr", "obfs4-127.0.0.1:0",
            "-target", f"127.0.0.1:{eport}", "-state", str(tmp_path / "s"),
        )  # fmt: skip
        client = None
        try:
            await server.read_until("SMETHODS DONE")
            words = server.first("SMETHOD")
            options = json.dumps({"serverAddress": words[2], **smethod_args(words)})
            client = await spawn(
                "-client", "-transport", "obfs4", "-mode", "transparent-UDP", "-options", options,
                "-state", str(tmp_path / "c"), "-workers", "2", "-ipcLogLevel", "DEBUG",
            )  # fmt: skip
            await client.read_until("CMETHODS DONE")
            assert sum(line.startswith("CMETHOD obfs4 ") for line in client.lines) == 1
            address = hostport(client.first("CMETHOD")[3])
            answered = await asyncio.to_thread(_udp_rounds, address, 12)
            assert answered == 12
        finally:
            if client is not None:
                await client.stop()
            await server.stop()
    assert client is not None and client.process.stdout is not None
    rest = (await client.process.stdout.read()).decode()
    assert "worker 0: obfs4: UDP session" in rest and "worker 1: obfs4: UDP session" in rest  # both take senders


def _udp_rounds(address: tuple[str, int], senders: int) -> int:
    """Each sender (its own source port) sends until it hears its echo; how many heard one."""
    answered = 0
    for i in range(senders):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.bind(("127.0.0.1", 0))
            sock.settimeout(0.5)
            payload = b"sender %d" % i
            for _ in range(20):  # the first datagrams may go while the transport connects
                sock.sendto(payload, address)
                try:
                    if sock.recvfrom(2048)[0] == payload:
                        answered += 1
                        break
                except TimeoutError:
                    continue
    return answered


async def test_shadow_salt_replays_refused_by_every_worker(tmp_path: Path) -> None:
    from ptdispatch.net.addr import Address

    shadow = {"password": "workers", "cipherName": "chacha20-ietf-poly1305"}
    echo, eport = await echo_server()
    async with running(
        "-server", "-transport", "shadow", "-bindaddr", "shadow-127.0.0.1:0", "-target", f"127.0.0.1:{eport}",
        "-state", str(tmp_path), "-options", json.dumps({"shadow": shadow}), "-workers", "2",
    ) as server:  # fmt: skip
        engine = api.client_transport("shadow", shadow).new_engine(Address("127.0.0.1", 9))  # type: ignore[attr-defined]
        engine.send_data(b"hello")
        flight = bytes(engine.data_to_send())
        address = server.method("SMETHOD", "shadow")
        assert await send_raw(address, flight)  # answered once
        replies = await asyncio.gather(*(send_raw(address, flight, wait=0.5) for _ in range(16)))
        assert not any(replies)
    echo.close()


async def test_meek_sessions_stay_in_one_worker(tmp_path: Path) -> None:
    # A meek session's requests may come over any connection (a CDN's above all): with each worker
    # keeping its own session table, a session split between workers would get a second upstream
    # connection (tor's stream torn in two).  One worker serves meek's listener.
    from tests.unit._meek_raw import post, read_response

    connections = 0
    received = bytearray()

    async def counting_sink(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        while data := await reader.read(65536):
            received.extend(data)
        writer.close()

    target = await asyncio.start_server(counting_sink, "127.0.0.1", 0)
    tport = target.sockets[0].getsockname()[1]
    async with running(
        "-server", "-transport", "meeklite", "-bindaddr", "meeklite-127.0.0.1:0", "-target", f"127.0.0.1:{tport}",
        "-state", str(tmp_path), "-workers", "2", "-ipcLogLevel", "INFO",
    ) as server:  # fmt: skip
        assert sum(line.startswith("SMETHOD meeklite ") for line in server.lines) == 1
        host, port = server.method("SMETHOD", "meeklite")
        for i in range(16):  # each POST on a fresh connection: the kernel would spread them over the workers
            reader, writer = await asyncio.open_connection(host, port)
            writer.write(post("one-session-many-connections", bytes([65 + i])))
            assert (await read_response(reader)).startswith(b"HTTP/1.1 200 OK\r\n")
            writer.close()
        await server.more_lines(0.5)
    target.close()
    assert connections == 1 and bytes(received) == bytes(range(65, 81))
    assert any("worker 0: meeklite: served by this worker alone" in line for line in server.lines)


async def test_meek_requests_and_a_full_session_table_in_the_metrics(tmp_path: Path) -> None:
    # meek has no handshake to fail: an operator sees probes and a full session table by the
    # requests' statuses and two counters, labelled with the name the transport is served under.
    from tests.unit._meek_raw import exchange, post

    echo, eport = await echo_server()
    mport = free_port()
    async with running(
        "-server", "-transport", "meeklite", "-bindaddr", "meeklite-127.0.0.1:0", "-target", f"127.0.0.1:{eport}",
        "-state", str(tmp_path), "-options", json.dumps({"meeklite": {"maxSessions": 1}}),
        "-metrics", f"127.0.0.1:{mport}",
    ) as server:  # fmt: skip
        _host, port = server.method("SMETHOD", "meeklite")
        answers = [
            await exchange(port, raw, read_until_close=True)
            for raw in (
                b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
                b"GET /nothing HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
                b"PUT / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                b"GARBAGE\r\n\r\n",
                post("session-in-use", b"hello", extra=b"Connection: close\r\n"),
                post("one-too-many", extra=b"Connection: close\r\n"),  # the table (1 session) is full
            )
        ]
        samples = await scrape(mport)
    echo.close()
    statuses = [answer.split(b" ", 2)[1] for answer in answers]
    assert statuses == [b"200", b"404", b"400", b"400", b"200", b"500"], answers
    assert answers[4].endswith(b"hello")

    def requests(method: str, status: str) -> float:
        return value(samples, "ptdispatch_meek_requests_total", transport="meeklite", method=method, status=status)

    assert (requests("GET", "200"), requests("GET", "404")) == (1, 1)
    assert (requests("other", "400"), requests("POST", "200"), requests("POST", "500")) == (2, 1, 1)
    assert value(samples, "ptdispatch_meek_sessions_refused_total", transport="meeklite") == 1
    assert value(samples, "ptdispatch_meek_sessions_ended_early_total") == 0
    assert value(samples, "ptdispatch_connections_opened_total", transport="meeklite", role="server") == 1
