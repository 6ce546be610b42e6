"""obfs2 against obfs4proxy 0.0.14, both directions, through the library API."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from tests.peers.obfs4proxy import echo_roundtrip, via_obfs4proxy_client, via_obfs4proxy_server

TRANSPORT = "obfs2"
pytestmark = pytest.mark.interop
BANNER = b"server speaks first\r\n"


async def small_exchanges(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    assert await asyncio.wait_for(reader.readexactly(len(BANNER)), 10) == BANNER
    for size in (1, 2, 100, 1448, 5000, 70_000):
        blob = os.urandom(size)
        writer.write(blob)
        assert await asyncio.wait_for(reader.readexactly(size), 10) == blob


async def test_our_client_to_obfs4proxy_server(tmp_path: Path) -> None:
    await via_obfs4proxy_server(TRANSPORT, tmp_path, small_exchanges, banner=BANNER)


async def test_obfs4proxy_client_to_our_server(tmp_path: Path) -> None:
    await via_obfs4proxy_client(TRANSPORT, tmp_path, small_exchanges, banner=BANNER)


async def bulk(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await echo_roundtrip(reader, writer, 64 << 20, timeout=60)


@pytest.mark.slow
async def test_64mib_our_client_to_obfs4proxy_server(tmp_path: Path) -> None:
    await via_obfs4proxy_server(TRANSPORT, tmp_path, bulk)


@pytest.mark.slow
async def test_64mib_obfs4proxy_client_to_our_server(tmp_path: Path) -> None:
    await via_obfs4proxy_client(TRANSPORT, tmp_path, bulk)
