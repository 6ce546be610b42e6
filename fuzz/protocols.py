"""Fuzz targets for the text and framing parsers: SOCKS, PT 3.0 flags and options, PT 1.0
environment and escaping, SMETHOD ARGS, the ExtORPort client, UDP framing and STUN."""

from __future__ import annotations

import contextlib
import tempfile
from pathlib import Path

from ptdispatch.errors import ConfigError, OptionsError, RemoteProtocolError
from ptdispatch.extorport.protocol import ExtOrClient, server_hash
from ptdispatch.frontends.socks.protocol import NeedData, Socks5Server
from ptdispatch.frontends.socks.socks4 import Socks4Server
from ptdispatch.ipc import env as pt1
from ptdispatch.ipc import flags as pt3
from ptdispatch.ipc.args import format_smethod_args, parse_kv_list, split_escaped, unescape
from ptdispatch.transports import registry
from ptdispatch.transports.base import ServerContext
from ptdispatch.udp.framing import LengthPrefixDecoder, StunDecoder, stun_mode_problem

from .support import Input, chunks, det_rng, target

_TMP = Path(tempfile.mkdtemp(prefix="ptdispatch-fuzz-"))


def _text(data: bytes) -> str:
    return data.decode("utf-8", errors="surrogateescape")


# --- SOCKS ------------------------------------------------------------------------------------------
def _socks(core: Socks5Server | Socks4Server, pieces: list[bytes]) -> None:
    """Feed until an event; then once more (data after the handshake must also be answered)."""
    for piece in pieces:
        event = core.receive_data(piece)
        core.data_to_send()
        if not isinstance(event, NeedData):
            core.receive_data(b"more")
            return


@target("socks5")
def socks5(data: bytes) -> None:
    inp = Input(data)
    seed = inp.byte()
    _socks(Socks5Server(), chunks(inp.rest(), seed))


@target("socks5-json")
def socks5_json(data: bytes) -> None:
    """The PT 3.0 parameter block (method 0x09): a greeting, then the block's length and body."""
    inp = Input(data)
    seed = inp.byte()
    body = inp.rest()
    wire = b"\x05\x01\x09" + len(body).to_bytes(4, "big") + body + b"\x05\x01\x00\x01\x7f\x00\x00\x01\x00\x50"
    _socks(Socks5Server(), chunks(wire, seed))


@target("socks4")
def socks4(data: bytes) -> None:
    inp = Input(data)
    seed = inp.byte()
    _socks(Socks4Server(), chunks(inp.rest(), seed))


# --- PT 3.0 ------------------------------------------------------------------------------------------
@target("pt3-flags")
def pt3_flags(data: bytes) -> None:
    """argv split at NUL bytes; -optionsFile is dropped (it names a file to read, a parent's choice)."""
    argv = [_text(a) for a in data.split(b"\x00")] if data else []
    flags, _problem = pt3.tokenize(argv)
    pt3.negotiate_version(flags)
    flags.pop("optionsFile", None)
    with contextlib.suppress(ConfigError):
        pt3.build_config(flags, cwd=_TMP)


@target("pt3-options")
def pt3_options(data: bytes) -> None:
    """-options JSON, then every transport's client and server option parser on what it gives."""
    inp = Input(data)
    which = inp.byte()
    try:
        options = pt3.load_options({"options": _text(inp.rest())})
        names = registry.names()
        per, common = pt3.split_options(options, names)
    except ConfigError:
        return
    name = names[which % len(names)]
    spec = registry.lookup(name)
    assert spec is not None
    raw = {**common, **per.get(name, {})}
    context = ServerContext(state_dir=_TMP / name, rng=det_rng(b"options"))
    for make in (lambda: spec.client(raw), lambda: spec.server(raw, context)):
        with contextlib.suppress(OptionsError):
            make()


# --- PT 1.0 ------------------------------------------------------------------------------------------
_PT1_NAMES = (
    pt1.VER, pt1.STATE, pt1.EXIT_ON_STDIN_CLOSE, pt1.CLIENT_TRANSPORTS, pt1.PROXY, pt1.SERVER_TRANSPORTS,
    pt1.SERVER_OPTIONS, pt1.BINDADDR, pt1.ORPORT, pt1.EXTENDED_PORT, pt1.AUTH_COOKIE, pt1.BIND_V4, pt1.BIND_V6,
    pt1.LOG_LEVEL, pt1.LOG_ADDRESSES,
)  # fmt: skip


@target("pt1-env")
def pt1_env(data: bytes) -> None:
    """Lines ``<index byte><value>`` set TOR_PT_* variables; then the whole environment is checked."""
    environ: dict[str, str] = {}
    for line in data.split(b"\n"):
        if line:
            environ[_PT1_NAMES[line[0] % len(_PT1_NAMES)]] = _text(line[1:]).replace("\x00", "")
    pt1.negotiate_version(environ.get(pt1.VER))
    with contextlib.suppress(ConfigError):
        pt1.build_config(environ, cwd=_TMP)


@target("pt1-escaping")
def pt1_escaping(data: bytes) -> None:
    """Tor's ``k=v;k=v`` (SOCKS args) and ``name:k=v;...`` (TOR_PT_SERVER_TRANSPORT_OPTIONS)."""
    text = _text(data)
    for parse in (parse_kv_list, pt1.parse_server_transport_options):
        with contextlib.suppress(ValueError):
            parse(text)


@target("smethod-args")
def smethod_args(data: bytes) -> None:
    """``ARGS:k=v,k=v``: what we format must read back as the same pairs (escaping is lossless)."""
    parts = [_text(p) for p in data.split(b"\x00")]
    pairs = {k: v for k, v in zip(parts[::2], parts[1::2], strict=False) if k}
    line = format_smethod_args(pairs)
    assert line.startswith("ARGS:")
    body = line[len("ARGS:") :]
    back = {}
    for item in split_escaped(body, ",") if body else []:
        key, value = split_escaped(item, "=")
        back[unescape(key)] = unescape(value)
    assert back == pairs, (pairs, line, back)


# --- ExtORPort -----------------------------------------------------------------------------------
_COOKIE = bytes(range(32))


@target("extorport")
def extorport(data: bytes) -> None:
    """tor's side of the ExtORPort: when the input's flag byte says so, the server hash is made
    right (so that the status and the command replies are reached); otherwise raw bytes."""
    inp = Input(data)
    seed, flag = inp.byte(), inp.byte()
    rng = det_rng(b"extorport")
    client = ExtOrClient(_COOKIE, "obfs4", "198.51.100.7:443", rng)
    wire = inp.rest()
    if flag & 1:
        nonce = det_rng(b"extorport")(32)
        end = wire.find(b"\x00") + 1
        if end > 0 and len(wire) >= end + 64:
            server_nonce = wire[end + 32 : end + 64]
            wire = wire[:end] + server_hash(_COOKIE, nonce, server_nonce) + wire[end + 32 :]
    try:
        for piece in chunks(wire, seed):
            client.receive_data(piece)
            client.data_to_send()
            if client.done:
                return
        client.receive_data(b"")  # tor closed the connection
    except RemoteProtocolError:
        pass


# --- UDP ------------------------------------------------------------------------------------------
@target("udp-frames")
def udp_frames(data: bytes) -> None:
    inp = Input(data)
    seed = inp.byte()
    decoder = LengthPrefixDecoder()
    try:
        for piece in chunks(inp.rest(), seed):
            for datagram in decoder.feed(piece):
                assert len(datagram) <= 0xFFFF
        decoder.close()
    except RemoteProtocolError:
        pass


@target("stun")
def stun(data: bytes) -> None:
    inp = Input(data)
    seed = inp.byte()
    body = inp.rest()
    stun_mode_problem(body, classic=bool(seed & 2))
    decoder = StunDecoder(classic=bool(seed & 2))
    try:
        for piece in chunks(body, seed):
            for message in decoder.feed(piece):  # STUN or ChannelData, each fit to go out over UDP
                assert stun_mode_problem(message, classic=decoder.classic) is None
        decoder.close()
    except RemoteProtocolError:
        pass
