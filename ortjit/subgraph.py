"""Subgraphs (If branches, Loop and Scan bodies): which outer values they read, and
running one with a plan per input signature.

A subgraph node reads values of enclosing graphs by name. The plan passes those
'captured' values to the node's step after its inputs, and GraphRunner feeds them to the
subgraph's own plan after the subgraph's inputs.
"""
from __future__ import annotations

import numpy as np
import onnx_ir as ir

from .ops.base import Info


def _graphs_in(node: ir.Node) -> list:
    out = []
    for attr in node.attributes.values():
        if attr.type == ir.AttributeType.GRAPH:
            out.append(attr.value)
        elif attr.type == ir.AttributeType.GRAPHS:
            out.extend(attr.value)
    return out


def _nested(graph: ir.Graph, into: set) -> set:
    into.add(graph)
    for node in graph:
        for g in _graphs_in(node):
            _nested(g, into)
    return into


def _reads(graph: ir.Graph, inner: set, seen: dict) -> None:
    for node in graph:
        for v in node.inputs:
            if v is not None and v.graph not in inner and v not in seen:
                seen[v] = None
        for g in _graphs_in(node):
            _reads(g, inner, seen)


def captured_values(node: ir.Node) -> list:
    """The outer-scope values read by the node's subgraphs (at any depth), in first-use order."""
    graphs = _graphs_in(node)
    if not graphs:
        return []
    inner: set = set()
    for g in graphs:
        _nested(g, inner)
    seen: dict = {}
    for g in graphs:
        _reads(g, inner, seen)
    return list(seen)


def graph_captured(graph: ir.Graph) -> list:
    inner = _nested(graph, set())
    seen: dict = {}
    _reads(graph, inner, seen)
    return list(seen)


def value_info(value) -> Info:
    """The Info a plan is built for, from an actual value (its data is not baked in)."""
    if isinstance(value, np.ndarray):
        return Info(tuple(value.shape), value.dtype)
    if isinstance(value, np.generic):
        return Info((), value.dtype)
    kind = "sequence" if isinstance(value, list) else "map" if isinstance(value, dict) else type(value).__name__
    return Info(None, kind, dynamic=True)


def signature(value):
    if isinstance(value, np.ndarray):
        return value.shape, value.dtype.str
    if isinstance(value, list):
        return ("seq",) + tuple(signature(v) for v in value)
    return type(value).__name__


class GraphRunner:
    """Runs a subgraph: a plan per signature of its inputs and captured values."""

    def __init__(self, graph: ir.Graph, opsets: dict, plan_cache_size: int = 8):
        from .plan import PlanCache
        self.graph, self.opsets = graph, opsets
        self.captured = graph_captured(graph)
        self.plans = PlanCache(plan_cache_size)

    def run(self, inputs: list, outer: dict) -> list:
        """inputs: for the subgraph's inputs, in order; outer: captured Value -> its value."""
        from .plan import build_plan
        if len(inputs) != len(self.graph.inputs):
            from .errors import Fail
            raise Fail(f"subgraph '{self.graph.name}' takes {len(self.graph.inputs)} inputs, got {len(inputs)}")
        captured = [outer[v] for v in self.captured]
        key = tuple(signature(a) for a in inputs) + tuple(signature(a) for a in captured)
        plan = self.plans.get(key)
        if plan is None:
            feed = {v.name: value_info(a) for v, a in zip(self.graph.inputs, inputs)}
            plan = build_plan(self.graph, self.opsets, feed,
                              captured={v: value_info(a) for v, a in zip(self.captured, captured)})
            self.plans.put(key, plan)
        return plan.run(list(inputs) + captured)
