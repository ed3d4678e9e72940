"""The op registry: filled by discovery, one module per op or op family under ortjit/ops/.

A module registers classes with @register; `lookup` picks the class for a node's domain,
type and opset version (the newest `since` not above the model's opset).
"""
from __future__ import annotations

import importlib
import pkgutil

_REGISTRY: dict[tuple[str, str], list[tuple[int, type]]] = {}
_loaded = False


def register(op_type: str, domain: str = "", since: int = 1):
    def deco(cls):
        cls.op_type = op_type
        cls.domain = domain
        versions = _REGISTRY.setdefault((domain, op_type), [])
        versions.append((since, cls))
        versions.sort(key=lambda v: v[0])
        return cls
    return deco


def _discover():
    global _loaded
    if _loaded:
        return
    _loaded = True
    from . import __path__ as pkg_path
    for mod in pkgutil.iter_modules(pkg_path):
        if mod.name not in ("base", "registry"):
            importlib.import_module(f"{__package__}.{mod.name}")


def normalize_domain(domain: str) -> str:
    return "" if domain in ("", "ai.onnx") else domain


def lookup(domain: str, op_type: str, opset: int):
    """The op instance for this node, or None when ortjit has no implementation."""
    _discover()
    versions = _REGISTRY.get((normalize_domain(domain), op_type))
    if not versions:
        return None
    chosen = versions[0][1]
    for since, cls in versions:
        if since <= opset:
            chosen = cls
    return chosen()


def known_ops() -> list[tuple[str, str]]:
    _discover()
    return sorted(_REGISTRY)
