"""obfs4 option parsing: client (``cert``/``iat-mode`` or legacy hex keys) and server."""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from ...errors import OptionsError
from ...net.addr import Address
from ...replay.base import ReplayStore
from ..base import (
    Clock,
    Engine,
    EngineClientTransport,
    EngineServerTransport,
    RawOptions,
    Rng,
    ServerContext,
    Timeouts,
)
from ..options import get_int, get_str
from . import state as st
from .engine import CLIENT_TIMEOUTS, SERVER_TIMEOUTS, ClientEngine, ServerEngine, ServerShared
from .handshake import ServerIdentity, os_session_keys

NAME = "obfs4"
SERVER_KEYS = ("node-id", "private-key", "drbg-seed")
#: Every option key each side accepts (``iatMode`` is an old spelling of ``iat-mode``).
CLIENT_KEYS = frozenset({"cert", "iat-mode", "iatMode", "node-id", "public-key"})
SERVER_OPTION_KEYS = frozenset({*SERVER_KEYS, "iat-mode", "iatMode"})


def _iat_mode(raw: RawOptions) -> int:
    return get_int(raw, NAME, "iat-mode", "iatMode", default=0, low=0, high=2)


def _hex_option(raw: RawOptions, key: str, length: int) -> bytes:
    value = get_str(raw, NAME, key)
    if value is None:
        raise OptionsError(NAME, f"missing option {key!r} (give 'cert', or both 'node-id' and 'public-key')")
    try:
        data = bytes.fromhex(value)
    except ValueError:
        raise OptionsError(NAME, f"option {key!r} is not valid hex: {value!r}") from None
    if len(data) != length:
        raise OptionsError(NAME, f"option {key!r} must be {length} bytes ({2 * length} hex digits), got {len(data)}")
    return data


@dataclass(frozen=True)
class Obfs4Client(EngineClientTransport):
    """Validated client options: the server's node id and public key, and our iat-mode."""

    node_id: bytes
    public_key: bytes
    iat_mode: int = 0
    rng: Rng = field(default=os.urandom, repr=False)
    clock: Clock = field(default=time.time, repr=False)
    timeouts: Timeouts = CLIENT_TIMEOUTS

    def new_engine(self, destination: Address | None) -> Engine:
        keys = os_session_keys(self.rng)
        return ClientEngine(self.node_id, self.public_key, self.iat_mode, self.rng, self.clock, keys)


def parse_client(raw: RawOptions) -> Obfs4Client:
    cert = get_str(raw, NAME, "cert")
    if cert is not None:
        try:
            node_id, public = st.decode_cert(cert.strip())
        except ValueError as exc:
            raise OptionsError(NAME, f"malformed option 'cert': {exc}") from None
    elif "node-id" not in raw and "public-key" not in raw:
        raise OptionsError(NAME, "missing option 'cert' (or the legacy pair 'node-id' and 'public-key')")
    else:
        node_id = _hex_option(raw, "node-id", st.NODE_ID_LENGTH)
        public = _hex_option(raw, "public-key", st.KEY_LENGTH)
    return Obfs4Client(node_id, public, _iat_mode(raw))


class Obfs4Server(EngineServerTransport):
    """A configured obfs4 server: identity, PRNG seed, replay filter (shared by its connections)."""

    def __init__(
        self,
        state: st.ServerState,
        state_dir: os.PathLike[str] | str,
        rng: Rng,
        clock: Clock,
        replay: ReplayStore | None = None,
        *,
        timeouts: Timeouts = SERVER_TIMEOUTS,
    ) -> None:
        self.state = state
        self._state_dir = state_dir
        self._rng = rng
        self._clock = clock
        self.timeouts = timeouts
        identity = ServerIdentity(state.node_id, state.private_key)
        self.shared = ServerShared(identity, state.drbg_seed, state.iat_mode, replay, timeouts)
        self._keys = os_session_keys(rng)

    @property
    def cert(self) -> str:
        return self.state.cert

    def new_engine(self) -> Engine:
        return ServerEngine(self.shared, self._rng, self._clock, self._keys)

    def smethod_args(self) -> dict[str, str]:
        return {"cert": self.state.cert, "iat-mode": str(self.state.iat_mode)}

    def bound(self, address: Address) -> None:
        # Written at start as obfs4proxy does (placeholders for address and port); now that the
        # listener is bound, rewritten with its port (and address).  A read-only dir is not fatal.
        with contextlib.suppress(OSError):
            st.write_bridge_line(Path(self._state_dir), self.state, address)


def parse_server(raw: RawOptions, ctx: ServerContext) -> Obfs4Server:
    given = [key for key in SERVER_KEYS if key in raw]
    if given and len(given) != len(SERVER_KEYS):
        missing = [key for key in SERVER_KEYS if key not in raw]
        raise OptionsError(NAME, f"missing option {missing[0]!r}: give node-id, private-key and drbg-seed together")
    fields: dict[str, object] = (
        {key: get_str(raw, NAME, key) for key in SERVER_KEYS} if given else st.load_file(ctx.state_dir, ctx.rng)
    )
    if "iat-mode" in raw or "iatMode" in raw:
        fields["iat-mode"] = _iat_mode(raw)
    state = st.state_from_fields(fields)
    st.save(ctx.state_dir, state)  # creates the state directory if need be
    return Obfs4Server(state, ctx.state_dir, ctx.rng, ctx.clock, ctx.replay, timeouts=ctx.timeouts or SERVER_TIMEOUTS)
