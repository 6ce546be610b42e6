"""Run ``ptdispatch`` counting the bytecodes each Python function executes (``bench.instructions --bytecodes``).

``python bench/_opcodes.py ARGS...`` is ``python -m ptdispatch ARGS...`` under a ``sys.settrace``
opcode tracer (main thread: the event loop's); at exit it writes ``bytecodes<TAB>calls<TAB>where``
lines to the file named by ``PTD_BENCH_OPCODES``.  Deterministic, and about 30 times slower.
"""

from __future__ import annotations

import atexit
import collections
import os
import sys
from types import CodeType, FrameType
from typing import Any

from ptdispatch import cli


def main() -> None:
    out = os.environ["PTD_BENCH_OPCODES"]
    opcodes: collections.Counter[CodeType] = collections.Counter()
    calls: collections.Counter[CodeType] = collections.Counter()

    def tracer(frame: FrameType, event: str, arg: Any) -> Any:
        if event == "opcode":
            opcodes[frame.f_code] += 1
        elif event == "call":
            frame.f_trace_opcodes = True
            calls[frame.f_code] += 1
        return tracer

    def write() -> None:
        sys.settrace(None)
        with open(out, "w") as f:
            for code, count in opcodes.items():
                f.write(f"{count}\t{calls[code]}\t{code.co_filename}:{code.co_firstlineno}:{code.co_name}\n")

    atexit.register(write)
    sys.settrace(tracer)
    cli.entry()  # as bench/_profiled.py starts it


if __name__ == "__main__":
    main()
