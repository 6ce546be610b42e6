"""The DarkStar, Starbridge and meek seeds are genuine flights: each gets past the handshake (or,
for meek, is answered 200), so fuzzing starts behind the first check.  Regenerate them with
``python -m fuzz.seeds`` when a format changes."""

from __future__ import annotations

import asyncio

from fuzz.targets import CORPUS

from fuzz import darkstar, meek
from ptdispatch.transports.base import Engine


def _seed(target: str, name: str, skip: int = 1) -> bytes:
    return (CORPUS / target / f"seed-{name}").read_bytes()[skip:]


def _established(engine: Engine, data: bytes) -> bool:
    engine.initiate()
    engine.data_to_send()
    engine.receive_data(data)
    return engine.established


def test_darkstar_seeds_complete_the_handshake() -> None:
    assert _established(darkstar.darkstar_server(), _seed("darkstar-server", "hello"))
    assert _established(darkstar.darkstar_client(), _seed("darkstar-client", "reply"))


def test_starbridge_seeds_complete_the_toneburst_and_handshake() -> None:
    assert _established(darkstar.starbridge_server(), _seed("starbridge-server", "flight"))
    assert _established(darkstar.starbridge_client(), _seed("starbridge-client", "flight"))


def test_meek_server_session_seed_is_answered_200() -> None:
    async def serve() -> bytes:
        return await meek._serve([_seed("meek-server", "session")])

    out = asyncio.run(serve())
    assert out.startswith(b"HTTP/1.1 200 OK\r\n")
    assert out.count(b"HTTP/1.1 200 OK") == 3  # then 500: the application closed the session
