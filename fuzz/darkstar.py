"""Fuzz targets for DarkStar (shadow cipherName DarkStar), Starburst and the composed
Starbridge/Replicant engines (Starburst toneburst, then DarkStar), client and server.

* ``darkstar-client`` / ``darkstar-server``: raw bytes from the peer to a fresh engine;
* ``darkstar-handshake``: a genuine peer's 64-byte flight with edits chosen by the input;
* ``darkstar-frames``: frames sealed with the right session key around lengths and contents
  chosen by the input (the parsing behind the authentication);
* ``starburst-client`` / ``starburst-server``: SMTP lines into the toneburst alone (its own
  error type is ``ValueError``, which the composed engine turns into ``RemoteProtocolError``);
* ``starbridge-client`` / ``starbridge-server``: the composed engine as Starbridge and Replicant
  (toneburst starburst) build them, with deterministic keys.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ptdispatch.transports.base import Engine
from ptdispatch.transports.darkstar.engine import ClientState, DarkStarClientEngine, DarkStarServerEngine, ServerKey
from ptdispatch.transports.darkstar.framing import nonce
from ptdispatch.transports.darkstar.handshake import server_identifier
from ptdispatch.transports.darkstar.keys import PrivateKey, private_from_scalar
from ptdispatch.transports.darkstar.replay import ReplayFilter
from ptdispatch.transports.starburst import Starburst, TonedEngine, client_script, server_script

from .engines import _edit
from .support import Input, chunks, det_rng, drive, engine_target, target

_SERVER = ServerKey(private_from_scalar(0x5EED_DA2C_57A2))
_SID = server_identifier(None)


def _keys(label: int) -> Callable[[], PrivateKey]:
    """Deterministic ephemeral keys, so that every finding replays the same way."""
    counter = itertools.count(1)
    return lambda: private_from_scalar(label * 1_000_003 + next(counter))


def darkstar_server() -> DarkStarServerEngine:
    return DarkStarServerEngine(_SERVER, _SID, ReplayFilter(), rng=det_rng(b"server"), make_key=_keys(2))


def darkstar_client() -> DarkStarClientEngine:
    return DarkStarClientEngine(_SERVER.public, _SID, make_key=_keys(1))


engine_target("darkstar-server", lambda inp: darkstar_server())
engine_target("darkstar-client", lambda inp: darkstar_client())


@target("darkstar-handshake")
def darkstar_handshake(data: bytes) -> None:
    """An edited genuine client hello to a server, or an edited server reply to a client."""
    inp = Input(data)
    to_server = bool(inp.byte() & 1)
    seed = inp.byte()
    server, client = darkstar_server(), darkstar_client()
    client.initiate()
    hello = client.data_to_send()
    if to_server:
        drive(server, chunks(_edit(inp, hello), seed))
        return
    server.receive_data(hello)
    client.receive_data(b"")  # nothing yet: the client waits for 64 bytes
    drive(client, chunks(_edit(inp, server.data_to_send()), seed))


_KEYS = (bytes(range(32)), bytes(range(32, 64)))


@target("darkstar-frames")
def darkstar_frames(data: bytes) -> None:
    """Frames after the handshake: records ``kind len(2) body``; odd kinds seal a frame with the
    right key whose length field is ``len`` (any value; the body is cut or padded), even kinds are
    raw bytes.  A role bit picks the client instead of the server."""
    inp = Input(data)
    seed, role = inp.byte(), inp.byte()
    engine: DarkStarClientEngine | DarkStarServerEngine
    if role & 1:
        engine = darkstar_client()
        engine.initiate()
        engine.data_to_send()
        engine._state = ClientState.OPEN  # the handshake's outcome, without the handshake
    else:
        engine = darkstar_server()
        engine._open = True
    engine._start(_KEYS[0], _KEYS[1])
    assert engine.established, "darkstar-frames: the engine must start past its handshake"
    sealer, counter = AESGCM(_KEYS[1]), 0
    wire = []
    while inp.pos < len(inp.data):
        kind, length = inp.byte(), inp.u16()
        if kind & 1:
            body = inp.take(min(length, 1 << 12)).ljust(length, b"\x00") if kind & 2 else inp.take(length % 64)
            wire.append(_seal_raw(sealer, counter, length, body))
            counter += 2
        else:
            wire.append(inp.take(length % 40))
    drive(engine, chunks(b"".join(wire), seed))


def _seal_raw(sealer: AESGCM, counter: int, length: int, body: bytes) -> bytes:
    """One frame whose sealed length field says ``length`` whatever ``body`` holds."""
    header = sealer.encrypt(nonce(counter), length.to_bytes(2, "big"), None)
    return header + sealer.encrypt(nonce(counter + 1), body, None)


# --- Starburst, alone and composed -------------------------------------------------------------------
def _toneburst(script: Callable[[], list[bytes | Callable[[bytes], bool]]]) -> Callable[[bytes], None]:
    def fuzz_one(data: bytes) -> None:
        inp = Input(data)
        seed = inp.byte()
        tone = Starburst(script(), clock=lambda: 0.0)
        tone.start()
        try:
            for piece in chunks(inp.rest(), seed):
                tone.feed(piece)
                tone.take()
        except ValueError:
            pass

    return fuzz_one


target("starburst-client")(_toneburst(client_script))
target("starburst-server")(_toneburst(server_script))


def starbridge_server() -> Engine:
    """What ``DarkStarServer(toned=True).new_engine()`` builds (Starbridge, and Replicant with a
    starburst toneburst), with deterministic keys and a fresh replay filter each time."""
    return TonedEngine(Starburst(server_script()), darkstar_server())


def starbridge_client() -> Engine:
    """What ``DarkStarClient(toned=True)`` builds, with the deterministic ephemeral key."""
    return TonedEngine(Starburst(client_script()), darkstar_client())


engine_target("starbridge-server", lambda inp: starbridge_server())
engine_target("starbridge-client", lambda inp: starbridge_client())
