"""``python -m bench._profiled ARGS``: ptdispatch with a cProfile switch (for ``bench.profile``).

SIGUSR1 starts the profiler, SIGUSR2 stops it and writes ``$PTD_PROFILE_OUT.<pid>.prof``.  Start-up
and shutdown stay outside the profile: only what runs between the two signals is counted.
"""

from __future__ import annotations

import asyncio
import cProfile
import os
import signal
from collections.abc import Coroutine
from typing import Any

from ptdispatch import cli, launch


def _wrap(original: Any) -> Any:
    prefix = os.environ.get("PTD_PROFILE_OUT", "/tmp/ptd-profile")

    def run(*args: Any) -> Coroutine[Any, Any, int]:
        async def profiled() -> int:
            loop = asyncio.get_running_loop()
            profiler = cProfile.Profile()

            def dump() -> None:
                profiler.disable()
                path = f"{prefix}.{os.getpid()}.prof"
                profiler.dump_stats(path + ".tmp")
                os.replace(path + ".tmp", path)

            loop.add_signal_handler(signal.SIGUSR1, profiler.enable)
            loop.add_signal_handler(signal.SIGUSR2, dump)
            result: int = await original(*args)
            return result

        return profiled()

    return run


if __name__ == "__main__":
    launch.run = _wrap(launch.run)  # type: ignore[attr-defined]  # the coroutine launch() starts
    cli.entry()
