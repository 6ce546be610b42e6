"""Transport names (case-insensitive) to their specs, imported on first use."""

from __future__ import annotations

import importlib

from .base import TransportSpec

# name, in its canonical spelling (the spec's, as in method lines) -> module defining ``SPEC``.
# Modules are imported lazily so that one transport's import cost (or failure) never touches another.
_MODULES: dict[str, str] = {
    "plain": "ptdispatch.transports.plain",
    "obfs4": "ptdispatch.transports.obfs4",
    "obfs2": "ptdispatch.transports.obfs2",
    "obfs3": "ptdispatch.transports.obfs3",
    "shadow": "ptdispatch.transports.shadow",
    "Optimizer": "ptdispatch.transports.optimizer",
    "meeklite": "ptdispatch.transports.meek",
    "meek": "ptdispatch.transports.meek",  # tor's ServerTransportPlugin name
    "meek_lite": "ptdispatch.transports.meek",  # torrc Bridge lines' name
    "Starbridge": "ptdispatch.transports.starbridge",
    "Replicant": "ptdispatch.transports.replicant",
}
_LOWER = {name.lower(): module for name, module in _MODULES.items()}


def names() -> list[str]:
    """Every transport name we know, in canonical spelling."""
    return list(_MODULES)


def lookup(name: str) -> TransportSpec | None:
    """The spec for ``name`` (any letter case), or ``None`` if we do not know it."""
    module_name = _LOWER.get(name.lower())
    if module_name is None:
        return None
    module = importlib.import_module(module_name)
    spec: TransportSpec = module.SPEC
    return spec
