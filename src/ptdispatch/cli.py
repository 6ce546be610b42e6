"""Command-line entry: flags (PT 3.0) or TOR_PT_* variables (PT 1.0) -> config -> run.

The top of the import graph: it picks a front door (:mod:`.ipc.flags` or :mod:`.ipc.env`); both
end in :func:`ptdispatch.launch.launch`, which imports neither of them nor this module.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence
from typing import TextIO

from .exitcode import ExitCode
from .ipc.flags import build_config, negotiate_version, tokenize
from .ipc.reporter import Reporter
from .launch import RunLoop, launch, run_loop


def main(
    argv: Sequence[str] | None = None,
    environ: Mapping[str, str] | None = None,
    *,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
    run: RunLoop = run_loop,
) -> int:
    """Run the dispatcher; returns the process exit code.

    ``argv``, ``environ`` and the two streams default to the process's own; ``run`` drives the
    dispatcher's coroutine (uvloop when installed).
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    environ = os.environ if environ is None else environ
    out = sys.stdout if stdout is None else stdout
    err = sys.stderr if stderr is None else stderr
    if any(a in ("-h", "-help", "--help", "-version", "--version") for a in argv):
        from . import helptext

        help_wanted = any(a in helptext.HELP_FLAGS for a in argv)
        out.write(helptext.usage() if help_wanted else helptext.version())
        out.flush()
        return ExitCode.OK
    from . import genconfig

    if genconfig.wanted(argv):
        return genconfig.main(argv)
    if not argv and "TOR_PT_MANAGED_TRANSPORT_VER" in environ:
        from .ipc import env as pt1

        return pt1.main(environ, run, stdout=out, stderr=err)
    reporter = Reporter(out=out, err=err)
    flags, problem = tokenize(argv)
    version = negotiate_version(flags)
    if version is None:
        reporter.error("VERSION-ERROR", "no-version")
        return ExitCode.CONFIG
    reporter.line("VERSION", version)
    if problem is not None:
        reporter.error("ENV-ERROR", problem)
        return ExitCode.USAGE
    return launch(reporter, lambda: build_config(flags), run, cookie_source="-authcookie", state_source="-state")


def entry() -> None:
    """Console-script entry point."""
    sys.exit(main())
