"""``shadow``: Shadowsocks AEAD, byte-compatible with shadowsocks-libev 3.3.5.

Options (client and server):

``cipherName`` (also ``cipher`` or ``method``)
    chacha20-ietf-poly1305 (the default), aes-256-gcm, aes-128-gcm, aes-192-gcm,
    xchacha20-ietf-poly1305; any letter case; Go spellings such as AEAD_CHACHA20_POLY1305 too.
``password``
    turned into the master key with EVP_BytesToKey (MD5), as ``ss-server -k``.
``key``
    the raw master key in base64 (URL-safe or standard), as ``ss-server --key``; give one of the two.

Client only:

``target``
    ``host:port`` written into the address header when the connection has no destination of its
    own (transparent-TCP mode, or SOCKS without ``serverAddress``).  ``serverAddress`` is read by
    the dispatcher, not here; when it is used, the SOCKS CONNECT address is the destination.

``cipherName: "DarkStar"`` (any letter case) selects DarkStar instead, Operator's current
``shadow`` (see :mod:`ptdispatch.transports.darkstar.transport`): client ``serverAddress`` +
``serverPublicKey``, server ``serverPrivateKey`` (or a generated key kept in the state directory)
+ ``serverAddress``; ``transport`` and ``bindAddress`` are accepted and ignored.

The server reads the client's address header, exposes it as the plaintext transport's
``get_extra_info("requested_destination")`` and forwards to its own target: it is not an open proxy.
"""

from __future__ import annotations

import os

from ...errors import OptionsError
from ...net.addr import Address, parse_hostport
from ..base import (
    ClientTransport,
    EngineClientTransport,
    EngineServerTransport,
    RawOptions,
    Rng,
    ServerContext,
    ServerTransport,
    TransportSpec,
)
from ..options import get_str
from .ciphers import ALIASES, CIPHERS, decode_key, evp_bytes_to_key, lookup_cipher
from .engine import DEFAULT_BOUNDS, ServerTimeouts, ShadowClientEngine, ShadowConfig, ShadowServerEngine
from .header import encode_address
from .replay import SaltFilter, StoreSaltFilter

NAME = "shadow"
DEFAULT_CIPHER = "chacha20-ietf-poly1305"

__all__ = ["SPEC", "ServerTimeouts", "ShadowClient", "ShadowConfig", "ShadowServer", "parse_config"]


def _cipher_help() -> str:
    go = ", ".join(sorted(name.upper() for name in ALIASES))
    return f"supported ciphers: {', '.join(CIPHERS)} (any case; also {go})"


def parse_config(raw: RawOptions) -> ShadowConfig:
    """The cipher and master key from ``cipherName`` and ``password`` or ``key``."""
    name = get_str(raw, NAME, "cipherName", "cipher", "method") or DEFAULT_CIPHER
    cipher = lookup_cipher(name)
    if cipher is None:
        raise OptionsError(NAME, f"unknown cipher {name!r}; {_cipher_help()}")
    password = get_str(raw, NAME, "password") or None
    key_text = get_str(raw, NAME, "key") or None
    if password is not None and key_text is not None:
        raise OptionsError(NAME, "give either option 'password' or option 'key', not both")
    if key_text is not None:
        try:
            master_key = decode_key(key_text, cipher.key_size)
        except ValueError as exc:
            raise OptionsError(NAME, f"option 'key' {exc}") from None
    elif password is not None:
        master_key = evp_bytes_to_key(password.encode("utf-8"), cipher.key_size)
    else:
        raise OptionsError(NAME, "missing option 'password' (or 'key', a base64 master key)", missing=True)
    return ShadowConfig(cipher, master_key)


def _header(destination: Address, what: str) -> bytes:
    try:
        return encode_address(destination)
    except ValueError as exc:
        raise OptionsError(NAME, f"{what} {destination}: {exc}") from None


class ShadowClient(EngineClientTransport):
    """Client options: the shared config and an optional fixed ``target``."""

    def __init__(
        self,
        config: ShadowConfig,
        target: Address | None = None,
        *,
        rng: Rng = os.urandom,
        salts: SaltFilter | None = None,
    ) -> None:
        self.config = config
        self.target = target
        self._rng = rng
        self._salts = salts if salts is not None else SaltFilter()
        self._target_header = _header(target, "option 'target'") if target is not None else None

    def new_engine(self, destination: Address | None) -> ShadowClientEngine:
        if destination is not None:
            header = _header(destination, "destination")
        elif self._target_header is not None:
            header = self._target_header
        else:
            raise OptionsError(
                NAME,
                "missing option 'target' (host:port): the destination the shadow header carries when the "
                "connection names none (transparent-TCP, the UDP modes, socks5 without serverAddress)",
            )
        return ShadowClientEngine(self.config, header, self._rng, self._salts)


class ShadowServer(EngineServerTransport):
    """Server side: the shared config and the listener-wide salt replay filter."""

    def __init__(
        self,
        config: ShadowConfig,
        *,
        rng: Rng = os.urandom,
        salts: SaltFilter | None = None,
        bounds: ServerTimeouts = DEFAULT_BOUNDS,
    ) -> None:
        self.config = config
        self.salts = salts if salts is not None else SaltFilter()
        self._rng = rng
        self.bounds = bounds

    def new_engine(self) -> ShadowServerEngine:
        return ShadowServerEngine(self.config, self._rng, self.salts, self.bounds)


def is_darkstar(raw: RawOptions) -> bool:
    name = get_str(raw, NAME, "cipherName", "cipher", "method") or ""
    return name.lower() == "darkstar"


def _client(raw: RawOptions) -> ClientTransport:
    if is_darkstar(raw):
        from ..darkstar.transport import client_from

        return client_from(raw, NAME, toned=False)
    config = parse_config(raw)
    target_text = get_str(raw, NAME, "target")
    target = None
    if target_text:
        try:
            target = parse_hostport(target_text, allow_zero_port=False)
        except ValueError as exc:
            raise OptionsError(NAME, f"option 'target': {exc}") from None
    return ShadowClient(config, target)


def _server(raw: RawOptions, ctx: ServerContext) -> ServerTransport:
    if is_darkstar(raw):
        from ..darkstar.transport import server_from

        return server_from(raw, ctx, NAME, toned=False, publish={"cipherName": "DarkStar"})
    bounds = DEFAULT_BOUNDS
    if ctx.timeouts is not None:  # each connection still draws its own, from [x, 2x]
        timeouts = ctx.timeouts
        bounds = ServerTimeouts((timeouts.handshake, 2 * timeouts.handshake), (timeouts.linger, 2 * timeouts.linger))
    salts = StoreSaltFilter(ctx.replay) if ctx.replay is not None else None
    return ShadowServer(parse_config(raw), rng=ctx.rng, salts=salts, bounds=bounds)


_COMMON = frozenset({"cipherName", "cipher", "method", "password", "key", "transport", "bindAddress"})
SPEC = TransportSpec(
    name=NAME,
    client=_client,
    server=_server,
    client_keys=_COMMON | {"target", "serverPublicKey"},
    server_keys=_COMMON | {"serverPrivateKey"},
)
