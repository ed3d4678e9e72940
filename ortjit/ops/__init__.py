"""Ops: one module per op or op family; see base.py for what an op provides."""
from .registry import lookup, register, known_ops  # noqa: F401
