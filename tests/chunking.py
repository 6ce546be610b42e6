"""Chunkings for the "any chunking gives the same bytes" properties."""

from __future__ import annotations

import itertools


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    """``data`` cut at every point of ``cuts`` (taken modulo ``len(data) + 1``); a cut at an end
    or twice at one point gives an empty piece, dropped by callers whose decoders never see one."""
    edges = [0, *sorted({c % (len(data) + 1) for c in cuts}), len(data)]
    return [data[a:b] for a, b in itertools.pairwise(edges)]
