"""glibc allocator tuning for bulk relaying.

Relays allocate and free 64-256 KiB buffers at a high rate.  With glibc's defaults each such
buffer is handed back to the kernel and faulted in again (~100 page faults per 256 KiB read),
which halves throughput.  Keeping a 4 MiB top pad and trimming only past 16 MiB removes that.
This is process-wide, so only the command-line entry point calls it, never the library.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_THRESHOLD = -1, -2, -3


def tune() -> bool:
    """Apply the settings; False where the C library is not glibc."""
    if not sys.platform.startswith("linux"):
        return False
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    ok = mallopt(M_MMAP_THRESHOLD, 1 << 20) and mallopt(M_TRIM_THRESHOLD, 16 << 20) and mallopt(M_TOP_PAD, 4 << 20)
    return bool(ok)
