"""Fuzz targets for the transport engines: obfs2, obfs3, obfs4 and shadow, client and server.

Three kinds per transport:

* ``<t>-client`` / ``<t>-server``: raw bytes from the peer to a fresh engine (what a prober sends);
* ``<t>-stream`` (obfs2, obfs3) and ``obfs4-handshake``: a genuine peer's bytes with edits chosen
  by the input (XOR at chosen offsets, a cut, trailing bytes), so the fuzzer reaches past the
  first check of the handshake;
* ``obfs4-frames`` / ``shadow-chunks``: frames sealed with the right keys around contents chosen
  by the input, so the parsing *behind* the authentication (packet types and lengths, chunk
  lengths, the address header) is fuzzed too.
"""

from __future__ import annotations

from collections.abc import Callable

from ptdispatch.transports.base import Engine
from ptdispatch.transports.obfs2 import Obfs2Engine
from ptdispatch.transports.obfs3 import Obfs3Engine
from ptdispatch.transports.obfs4 import framing as f4
from ptdispatch.transports.obfs4.engine import ClientEngine, ServerEngine, ServerShared
from ptdispatch.transports.obfs4.handshake import ServerIdentity
from ptdispatch.transports.obfs4.state import public_key_of
from ptdispatch.transports.shadow import ShadowConfig, parse_config
from ptdispatch.transports.shadow.ciphers import CIPHERS, TAG_SIZE
from ptdispatch.transports.shadow.engine import ShadowClientEngine, ShadowServerEngine
from ptdispatch.transports.shadow.header import encode_address
from ptdispatch.transports.shadow.replay import SaltFilter

from .support import Input, chunks, det_rng, drive, engine_target, target

NOW = 1_750_000_000.0


def _edit(inp: Input, wire: bytes) -> bytes:
    """Apply the input's edits to a genuine flight: up to 8 XORs, an optional cut, then extra bytes."""
    data = bytearray(wire)
    for _ in range(inp.byte() % 9):
        pos, mask = inp.u16(), inp.byte()
        if data:
            data[pos % len(data)] ^= mask
    cut = inp.u16()
    if cut & 0x8000 and data:
        del data[(cut & 0x7FFF) % len(data) :]
    return bytes(data) + inp.rest()


def _genuine(inp: Input, ours: Engine, peer: Engine) -> None:
    """Drive ``ours`` with an edited flight of ``peer``, which has already seen our opening bytes."""
    seed = inp.byte()
    drive(ours, chunks(_edit(inp, peer.data_to_send()), seed))


# --- obfs2 / obfs3 --------------------------------------------------------------------------------
def _role(cls: type[Obfs2Engine] | type[Obfs3Engine], initiator: bool) -> Callable[[Input], Engine]:
    return lambda inp: cls(initiator, det_rng(b"ours"))


for _name, _cls in (("obfs2", Obfs2Engine), ("obfs3", Obfs3Engine)):
    engine_target(f"{_name}-client", _role(_cls, True))
    engine_target(f"{_name}-server", _role(_cls, False))


def _stream(inp: Input, cls: type[Obfs2Engine] | type[Obfs3Engine]) -> None:
    initiator = bool(inp.byte() & 1)
    ours, peer = cls(initiator, det_rng(b"ours")), cls(not initiator, det_rng(b"peer"))
    ours.initiate()
    peer.initiate()
    peer.receive_data(ours.data_to_send())
    peer.send_data(b"GET / HTTP/1.0\r\n\r\n")
    _genuine(inp, ours, peer)


target("obfs2-stream")(lambda data: _stream(Input(data), Obfs2Engine))
target("obfs3-stream")(lambda data: _stream(Input(data), Obfs3Engine))


# --- obfs4 ------------------------------------------------------------------------------------------
_PRIVATE = bytes(range(1, 33))
_NODE_ID = bytes(range(20))
_DRBG_SEED = bytes(range(100, 124))


def _obfs4_server(inp: Input) -> ServerEngine:
    shared = ServerShared(ServerIdentity(_NODE_ID, _PRIVATE), _DRBG_SEED, inp.byte() % 3)
    return ServerEngine(shared, det_rng(b"server"), lambda: NOW)


def _obfs4_client(inp: Input) -> ClientEngine:
    return ClientEngine(_NODE_ID, public_key_of(_PRIVATE), inp.byte() % 3, det_rng(b"client"), lambda: NOW)


engine_target("obfs4-server", _obfs4_server)
engine_target("obfs4-client", _obfs4_client)


@target("obfs4-handshake")
def obfs4_handshake(data: bytes) -> None:
    """An edited genuine client handshake to a server, or an edited server reply to a client."""
    inp = Input(data)
    to_server = bool(inp.byte() & 1)
    server, client = _obfs4_server(inp), _obfs4_client(inp)
    client.initiate()
    if to_server:
        _genuine(inp, server, client)
        return
    server.receive_data(client.data_to_send())
    _genuine(inp, client, server)


_KEYS = (bytes(range(72)), bytes(range(72, 144)))


@target("obfs4-frames")
def obfs4_frames(data: bytes) -> None:
    """Frames after the handshake: records ``kind len(2) body``; odd kinds seal ``body`` as one
    packet plaintext (any type, length field and padding) with the right key, even kinds are raw."""
    inp = Input(data)
    seed, role = inp.byte(), inp.byte()
    engine: ClientEngine | ServerEngine = _obfs4_client(inp) if role & 1 else _obfs4_server(inp)
    engine._encoder = f4.Encoder(_KEYS[0])  # the handshake's outcome, without the handshake
    engine._decoder = f4.Decoder(_KEYS[1], det_rng(b"decoder"))
    engine._decoder.keep_seed = isinstance(engine, ClientEngine)
    sealer = f4.Encoder(_KEYS[1])
    wire = []
    while inp.pos < len(inp.data):
        kind, size = inp.byte(), inp.u16()
        body = inp.take(size % (f4.MAX_FRAME_PAYLOAD + 1) if kind & 1 else size % 64)
        wire.append(sealer.packets([body]) if kind & 1 else body)
    drive(engine, chunks(b"".join(wire), seed))


# --- shadow ------------------------------------------------------------------------------------------
_CIPHERS = sorted(CIPHERS)
_CONFIGS = {name: parse_config({"password": "fuzz", "cipherName": name}) for name in _CIPHERS}


def _config(inp: Input) -> ShadowConfig:
    return _CONFIGS[_CIPHERS[inp.byte() % len(_CIPHERS)]]


def _shadow_server(inp: Input) -> ShadowServerEngine:
    return ShadowServerEngine(_config(inp), det_rng(b"server"), SaltFilter())


def _shadow_client(inp: Input) -> ShadowClientEngine:
    header = encode_address(("example.net", 443))  # type: ignore[arg-type]
    return ShadowClientEngine(_config(inp), header, det_rng(b"client"), SaltFilter())


engine_target("shadow-server", _shadow_server)
engine_target("shadow-client", _shadow_client)


@target("shadow-chunks")
def shadow_chunks(data: bytes) -> None:
    """A salt then records ``kind length(2) body``: odd kinds seal ``length`` (any value, even
    0 or > 0x3FFF) and ``body`` as one chunk with the right subkey, even kinds are raw bytes; the
    server parses the address header in the first chunk.  A role bit picks the client instead."""
    inp = Input(data)
    seed, role = inp.byte(), inp.byte()
    config = _config(inp)
    salt = det_rng(b"salt")(config.cipher.salt_size)
    engine: Engine
    if role & 1:
        engine = ShadowClientEngine(config, b"\x01\x7f\x00\x00\x01\x00\x50", det_rng(b"client"), SaltFilter())
    else:
        engine = ShadowServerEngine(config, det_rng(b"server"), SaltFilter())
    aead, nonce_size, counter = config.aead_for(salt), config.cipher.nonce_size, 0
    wire = [salt]
    while inp.pos < len(inp.data):
        kind, length = inp.byte(), inp.u16()
        if kind & 1:
            body = inp.take(min(length, 0x3FFF) if kind & 2 else inp.byte())
            wire.append(aead.encrypt(counter.to_bytes(nonce_size, "little"), length.to_bytes(2, "big"), None))
            wire.append(aead.encrypt((counter + 1).to_bytes(nonce_size, "little"), body, None))
            counter += 2
        else:
            wire.append(inp.take(length % (2 * TAG_SIZE + 3)))
    drive(engine, chunks(b"".join(wire), seed))
