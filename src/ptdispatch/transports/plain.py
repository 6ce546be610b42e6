"""``plain``: the identity transport (tests, and the benchmark's baseline)."""

from __future__ import annotations

from ..net.addr import Address
from .base import (
    DEFAULT_TIMEOUTS,
    Engine,
    EngineClientTransport,
    EngineServerTransport,
    RawOptions,
    ServerContext,
    Timeouts,
    TransportSpec,
)


class PlainEngine(Engine):
    """Bytes pass through unchanged; established from the start."""

    __slots__ = ("_out",)

    def __init__(self) -> None:
        self._out: list[bytes] = []

    @property
    def established(self) -> bool:
        return True

    def receive_data(self, data: bytes) -> bytes:
        return data

    def send_data(self, data: bytes) -> None:
        self._out.append(data)

    def data_to_send(self) -> bytes:
        out = self._out
        if not out:
            return b""
        self._out = []
        return out[0] if len(out) == 1 else b"".join(out)


class PlainClient(EngineClientTransport):
    def new_engine(self, destination: Address | None) -> Engine:
        return PlainEngine()


class PlainServer(EngineServerTransport):
    def __init__(self, timeouts: Timeouts = DEFAULT_TIMEOUTS) -> None:
        self.timeouts = timeouts

    def new_engine(self) -> Engine:
        return PlainEngine()


def _client(raw: RawOptions) -> PlainClient:
    return PlainClient()


def _server(raw: RawOptions, ctx: ServerContext) -> PlainServer:
    return PlainServer(ctx.timeouts or DEFAULT_TIMEOUTS)


SPEC = TransportSpec(name="plain", client=_client, server=_server, client_keys=frozenset(), server_keys=frozenset())
