"""DarkStar client and server transports, their options and the server key on disk.

Shared by ``shadow`` (cipherName DarkStar), ``Starbridge`` and ``Replicant``; ``toned`` puts the
Starburst toneburst in front.  Options (Operator's names):

* client: ``serverPublicKey`` (66-byte Keychain base64; a bare 32-byte X in base64 or hex also
  works) and ``serverAddress``, which is both where to dial and, as ``IP:PORT``, the server
  identifier hashed into the handshake;
* server: ``serverPrivateKey`` (33-byte Keychain base64, or a bare 32-byte scalar) and
  ``serverAddress``, the public ``IP:PORT`` clients use.  Without a key the server generates one
  (compact-representable, so Swift clients accept it) and keeps it in
  ``<state>/<transport>_darkstar.json`` across restarts; without ``serverAddress`` it uses its
  bound address and says so in a LOG line.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from collections.abc import Mapping
from pathlib import Path

from ...errors import OptionsError
from ...net.addr import Address, parse_hostport
from ...net.upstream import DIRECT, Dialer
from ...replay import SeenFilter
from ..adapter import AppFactory, dial_engine
from ..base import Engine, EngineClientTransport, EngineServerTransport, RawOptions, Rng, ServerContext, Timeouts
from ..options import get_str
from ..starburst import Starburst, TonedEngine, client_script, server_script
from .engine import CLIENT_TIMEOUTS, SERVER_TIMEOUTS, DarkStarClientEngine, DarkStarServerEngine, ServerKey
from .handshake import server_identifier
from .keys import PublicKey, decode_private, decode_public, encode_private, encode_public, generate_compact
from .replay import REPLAY_TTL, ReplayFilter, SeenKeys

PUBLIC_KEY = "serverPublicKey"
PRIVATE_KEY = "serverPrivateKey"
SERVER_ADDRESS = "serverAddress"


def option_address(raw: RawOptions, transport: str) -> Address | None:
    text = get_str(raw, transport, SERVER_ADDRESS)
    if not text:
        return None
    try:
        return parse_hostport(text, allow_zero_port=False)
    except ValueError as exc:
        raise OptionsError(transport, f"option {SERVER_ADDRESS!r}: {exc}") from None


def public_key_option(raw: RawOptions, transport: str, key: str = PUBLIC_KEY) -> PublicKey:
    text = get_str(raw, transport, key)
    if not text:
        raise OptionsError(transport, f"missing option {key!r} (the server's DarkStar public key)", missing=True)
    try:
        return decode_public(text)
    except ValueError as exc:
        raise OptionsError(transport, f"option {key!r} {exc}") from None


class DarkStarClient(EngineClientTransport):
    """A DarkStar client, with the Starburst toneburst first when ``toned``."""

    def __init__(self, server_key: PublicKey, server_address: Address | None, *, toned: bool = False) -> None:
        self.server_key = server_key
        self.server_address = server_address
        self.toned = toned
        self.timeouts = CLIENT_TIMEOUTS

    def engine_for(self, address: Address | None) -> Engine:
        inner = DarkStarClientEngine(self.server_key, server_identifier(address))
        return TonedEngine(Starburst(client_script()), inner) if self.toned else inner

    def new_engine(self, destination: Address | None) -> Engine:
        return self.engine_for(self.server_address)

    async def dial(
        self,
        address: Address,
        app_factory: AppFactory,
        *,
        destination: Address | None = None,
        dialer: Dialer = DIRECT,
    ) -> tuple[asyncio.Transport, asyncio.BaseProtocol]:
        # The server identifier is the address we dial (serverAddress when it was given).
        return await dial_engine(self.engine_for(address), address, app_factory, dialer, self.timeouts)


class DarkStarServer(EngineServerTransport):
    """A DarkStar server: its static key, identifier, replay filter and what clients need to know."""

    def __init__(
        self,
        key: ServerKey,
        address: Address | None,
        publish: Mapping[str, str],
        *,
        toned: bool = False,
        rng: Rng = os.urandom,
        replay: SeenKeys | None = None,
        timeouts: Timeouts = SERVER_TIMEOUTS,
    ) -> None:
        self.key = key
        #: Upper bounds of each connection's random handshake timeout and linger.
        self.timeouts = timeouts
        self.address = address
        self.sid = server_identifier(address)
        self.toned = toned
        self.replay = replay if replay is not None else ReplayFilter()
        self._publish = dict(publish)
        self._rng = rng
        #: Messages for the dispatcher's LOG (read after the listener is bound).
        self.notes: list[str] = []

    def new_engine(self) -> Engine:
        inner = DarkStarServerEngine(self.key, self.sid, self.replay, rng=self._rng)
        if not self.toned:
            return inner
        return TonedEngine(Starburst(server_script()), inner)

    def bound(self, address: Address) -> None:
        if self.address is None:
            self.sid = server_identifier(address)
            self.notes.append(
                f"no serverAddress option: the DarkStar server identifier is the bound address {address}; "
                "clients must use exactly that address"
            )

    def smethod_args(self) -> dict[str, str]:
        return dict(self._publish)


def state_path(state_dir: Path, transport: str) -> Path:
    return state_dir / f"{transport.lower()}_darkstar.json"


def server_key(raw: RawOptions, ctx: ServerContext, transport: str, *, key: str = PRIVATE_KEY) -> ServerKey:
    """The configured private key, else the one kept in the state directory (made on first use)."""
    text = get_str(raw, transport, key)
    if text:
        try:
            return ServerKey(decode_private(text))
        except ValueError as exc:
            raise OptionsError(transport, f"option {key!r} {exc}") from None
    path = state_path(ctx.state_dir, transport)
    try:
        fields = json.loads(path.read_text())
        return ServerKey(decode_private(str(fields[PRIVATE_KEY])))
    except FileNotFoundError:
        pass
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise OptionsError(transport, f"cannot use the key in {path}: {exc}") from None
    fresh = ServerKey(generate_compact())
    save_key(path, fresh, transport)
    return fresh


def key_fields(key: ServerKey) -> dict[str, str]:
    return {PRIVATE_KEY: encode_private(key.private), PUBLIC_KEY: encode_public(key.public)}


def save_key(path: Path, key: ServerKey, transport: str) -> None:
    try:
        with contextlib.suppress(FileExistsError):
            path.parent.mkdir(mode=0o700, parents=True)
        tmp = path.with_name(path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(json.dumps(key_fields(key), indent=2) + "\n")
        os.replace(tmp, path)
    except OSError as exc:
        raise OptionsError(transport, f"cannot write the server key to {path}: {exc.strerror or exc}") from None


def client_from(
    raw: RawOptions, transport: str, *, toned: bool, key_source: RawOptions | None = None
) -> DarkStarClient:
    """A client from Operator-style options (``key_source`` holds ``serverPublicKey`` when it is
    not ``raw`` itself: Replicant's ``polish`` object)."""
    server_key = public_key_option(raw if key_source is None else key_source, transport)
    return DarkStarClient(server_key, option_address(raw, transport), toned=toned)


def server_from(
    raw: RawOptions,
    ctx: ServerContext,
    transport: str,
    *,
    toned: bool,
    publish: Mapping[str, str] | None = None,
    key_source: RawOptions | None = None,
) -> DarkStarServer:
    """A server from Operator-style options; it publishes ``publish`` and ``serverPublicKey``."""
    key = server_key(raw if key_source is None else key_source, ctx, transport)
    args = {**(publish or {}), PUBLIC_KEY: encode_public(key.public)}
    replay = SeenFilter(ctx.replay, b"darkstar", REPLAY_TTL) if ctx.replay is not None else None
    timeouts = ctx.timeouts or SERVER_TIMEOUTS
    return DarkStarServer(
        key, option_address(raw, transport), args, toned=toned, rng=ctx.rng, replay=replay, timeouts=timeouts
    )
