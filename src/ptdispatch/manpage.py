"""``ptdispatch.1``, the man page, built from the same sections as ``ptdispatch -h``.

    python -m ptdispatch.manpage > ptdispatch.1 && man -l ptdispatch.1

It is generated rather than shipped so that it always lists the transports and flags this
installation has.
"""

from __future__ import annotations

import datetime
import sys

from . import __version__, helptext


def _roff(text: str) -> str:
    """Escape a line for roff: backslashes, and a leading dot or quote."""
    text = text.replace("\\", "\\e").replace("-", "\\-")
    return "\\&" + text if text.startswith((".", "'")) else text


def render(today: datetime.date | None = None) -> str:
    """The whole page in man(7) markup."""
    date = (today or datetime.date.today()).isoformat()
    out = [
        f'.TH PTDISPATCH 1 "{date}" "ptdispatch {__version__}" "User Commands"',
        ".SH NAME",
        "ptdispatch \\- Pluggable Transports 3.0 dispatcher (obfs4, shadow, ...)",
        ".SH SYNOPSIS",
        ".nf",
        *(_roff(line) for line in helptext.SYNOPSIS),
        ".fi",
        ".SH DESCRIPTION",
        *(_roff(line) for line in helptext.DESCRIPTION),
    ]
    for title, body in helptext.sections():
        out += [f'.SH "{title}"', ".nf", *(_roff(line.removeprefix("  ")) for line in body), ".fi"]
    return "\n".join(out) + "\n"


def main() -> int:
    sys.stdout.write(render())
    return 0


if __name__ == "__main__":
    sys.exit(main())
