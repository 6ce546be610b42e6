"""``Replicant``: a toneburst (Starburst or none), then the DarkStar polish.

Two option forms are accepted:

* Operator's JSON (Replicant-go v3.0.23, notes section 5.1)::

      {"serverAddress": "IP:PORT", "transport": "Replicant",
       "toneburst": {"type": "starburst", "mode": "SMTPClient"},      (absent or null: none)
       "polish": {"type": "DarkStar", "serverPublicKey": "<base64>"}}  (server: serverPrivateKey)

  ``toneburst.type`` may be ``starburst``, ``starbridge`` or ``smtp`` (Go ignores it) and ``mode``
  ``SMTPClient``/``SMTPServer``; ``polish.type`` may only be DarkStar; ``polish.serverAddress`` is
  ignored, as in Go.
* the flat form, which is what the server publishes in ``SMETHOD ... ARGS:``: a top-level
  ``serverPublicKey`` (server: ``serverPrivateKey``, or nothing to use a generated key kept in the
  state directory) meaning Starburst + DarkStar, or ``toneburst=none`` for DarkStar alone.

The toneburst kinds Go once had (Monotone, Whalesong) and the Silver polish are gone from every
Operator stack; asking for them is an error naming what we support.
"""

from __future__ import annotations

from collections.abc import Mapping

from ..errors import OptionsError
from .base import RawOptions, ServerContext, TransportSpec
from .darkstar.transport import DarkStarClient, DarkStarServer, client_from, server_from

NAME = "Replicant"
TONEBURSTS = ("starburst", "starbridge", "smtp")
SUPPORTED = "supported: toneburst 'starburst' (modes SMTPClient/SMTPServer) or none; polish 'DarkStar'"


def _toneburst(raw: RawOptions, nested: bool, mode: str) -> bool:
    """Whether a Starburst toneburst runs (``mode``: the one this side must have, if any)."""
    value = raw.get("toneburst")
    if value is None:
        return not nested
    if isinstance(value, str):
        kind = value.lower()
        if kind in ("none", ""):
            return False
        if kind in TONEBURSTS:
            return True
        raise OptionsError(NAME, f"option 'toneburst': unknown kind {value!r}; {SUPPORTED}")
    if not isinstance(value, Mapping):
        raise OptionsError(NAME, f"option 'toneburst' must be an object or a string; {SUPPORTED}")
    kind = value.get("type", "starburst")
    if not isinstance(kind, str) or kind.lower() not in TONEBURSTS:
        raise OptionsError(NAME, f"option 'toneburst': unknown type {kind!r}; {SUPPORTED}")
    given = value.get("mode", mode)
    if not isinstance(given, str) or given.lower() not in ("smtpclient", "smtpserver"):
        raise OptionsError(NAME, f"option 'toneburst': unknown mode {given!r}; {SUPPORTED}")
    if given.lower() != mode.lower():
        raise OptionsError(NAME, f"option 'toneburst': mode {given!r} on this side; expected {mode!r}")
    return True


def _polish(raw: RawOptions) -> RawOptions | None:
    """The ``polish`` object (its keys), or None for the flat form."""
    value = raw.get("polish")
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise OptionsError(NAME, f"option 'polish' must be an object; {SUPPORTED}")
    kind = value.get("type", "DarkStar")
    if not isinstance(kind, str) or kind.lower() != "darkstar":
        raise OptionsError(NAME, f"option 'polish': unknown type {kind!r}; {SUPPORTED}")
    return value


def _client(raw: RawOptions) -> DarkStarClient:
    polish = _polish(raw)
    toned = _toneburst(raw, polish is not None, "SMTPClient")
    return client_from(raw, NAME, toned=toned, key_source=polish)


def _server(raw: RawOptions, ctx: ServerContext) -> DarkStarServer:
    polish = _polish(raw)
    toned = _toneburst(raw, polish is not None, "SMTPServer")
    publish = {} if toned else {"toneburst": "none"}
    return server_from(raw, ctx, NAME, toned=toned, publish=publish, key_source=polish)


COMMON = frozenset({"transport", "bindAddress", "toneburst", "polish"})
SPEC = TransportSpec(
    name=NAME,
    client=_client,
    server=_server,
    client_keys=frozenset({"serverPublicKey"}) | COMMON,
    server_keys=frozenset({"serverPrivateKey"}) | COMMON,
)
