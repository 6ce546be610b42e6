"""The error tree.

``PTError`` is the root.  Errors caused by what the *peer* sent (the network) are
``RemoteProtocolError`` and subclass ``ConnectionError``, so code that already catches
``OSError`` keeps working.  Errors caused by *our* configuration are ``ConfigError``.
"""

from __future__ import annotations


class PTError(Exception):
    """Root of every error ptdispatch raises on purpose."""


class ConfigError(PTError, ValueError):
    """A flag, environment variable or option is missing or malformed.

    The message is written for a person: it names the flag or key and says what is expected.
    """


class ProxyConfigError(ConfigError):
    """The upstream proxy (-proxy, TOR_PT_PROXY) is malformed or unsupported (PROXY-ERROR, exit 69)."""


class OptionsError(ConfigError):
    """A transport rejected one of its options (client or server side)."""

    def __init__(self, transport: str, message: str, *, missing: bool = False) -> None:
        super().__init__(message)
        self.transport = transport
        self.message = message
        #: True when a required key is absent (it may still come per connection, via SOCKS).
        self.missing = missing


class RemoteProtocolError(PTError, ConnectionError):
    """The peer sent bytes that break the protocol (garbage, a probe, a wrong key, a bad tag).

    ``linger`` is how many seconds the connection should keep reading and discarding before it
    is closed, so that a prober learns nothing from the timing (obfs4 does this); 0 closes at once.
    """

    def __init__(self, message: str, *, linger: float = 0.0) -> None:
        super().__init__(message)
        self.linger = linger


class HandshakeTimeout(RemoteProtocolError, TimeoutError):
    """The peer did not finish the transport handshake in time.

    Also a ``TimeoutError``, as every other dial that runs out of time is: a client's caller then
    tells it from a peer that broke the protocol (the SOCKS frontend replies 6, TTL expired, not 1).
    A server handles it as it did (through ``RemoteProtocolError``: linger, no byte sent)."""


class ClosedEmpty(RemoteProtocolError):
    """The peer closed before sending a byte: a load balancer's TCP check, a port scan.  Nothing was
    learnt and nothing is told: counted apart from probes (metrics reason ``empty``, logged at DEBUG)."""


class ReplayDetected(RemoteProtocolError):
    """The peer repeated a handshake or salt seen before (a replayed connection)."""


class DrainTimeout(PTError, TimeoutError):
    """The relay was closing a connection (both directions done, or a side gone), but its peer read
    none of the bytes still to be sent to it for the drain deadline
    (:data:`ptdispatch.net.relay.DRAIN_TIMEOUT`): the relay reset the connection rather than hold
    it for as long as the peer likes.  A ``TimeoutError``: counted under the close status ``timeout``."""


class InternalError(PTError):
    """A bug: an engine or transport raised something other than ``RemoteProtocolError``.

    The adapter converts it at the boundary (h11's rule) and treats the connection exactly like a
    failed handshake: it lingers for ``linger`` seconds, reports this error to ``on_error`` and
    sends nothing.  The original exception is ``__cause__``; the dispatcher logs it at ERROR.
    """

    def __init__(self, message: str, *, linger: float = 0.0) -> None:
        super().__init__(message)
        self.linger = linger

    @classmethod
    def wrap(cls, exc: BaseException, *, linger: float = 0.0) -> InternalError:
        """An ``InternalError`` for ``exc``, naming its type and where it was raised."""
        where = ""
        tb = exc.__traceback__
        if tb is not None:
            while tb.tb_next is not None:
                tb = tb.tb_next
            code = tb.tb_frame.f_code
            where = f" (in {code.co_name}, {code.co_filename.rsplit('/', 1)[-1]}:{tb.tb_lineno})"
        error = cls(f"internal error: {type(exc).__name__}: {exc}{where}", linger=linger)
        error.__cause__ = exc
        return error


def failed_dial(exc: BaseException) -> bool:
    """A dial that failed through the network, the peer or the options, not through a bug: an
    ``OSError`` (``RemoteProtocolError`` included), an ``OptionsError``, or a bare ``UnicodeError``,
    which getaddrinfo raises instead of ``gaierror`` when the IDNA codec refuses a host name (a
    label over 63 characters).  A bug's ``UnicodeDecodeError`` or ``UnicodeEncodeError`` is not one."""
    return isinstance(exc, OSError | OptionsError) or type(exc) is UnicodeError


def internal_error(exc: BaseException) -> str:
    """How a bug is described in a log line: ``internal error: Type: message (where)``."""
    return str(exc) if isinstance(exc, InternalError) else str(InternalError.wrap(exc))


class LocalProtocolError(PTError, RuntimeError):
    """We used an engine or protocol object the wrong way (a bug on our side)."""
