"""Graph passes on onnx-ir, run by its PassManager for a configurable number of steps.

Levels follow ONNX Runtime's GraphOptimizationLevel: 0 disables everything, 1 (basic)
folds constants, removes dead nodes and folds BatchNormalization into the Conv before it,
2 and above also move Conv biases into epilogues, fuse elementwise chains, run a Conv's
fused loop on the Conv's GEMM pieces (ortjit.FusedConv) and let a depthwise Conv read a
channel shuffle's input in place (ortjit.ChannelShuffleConv).
"""
from __future__ import annotations

import onnx_ir as ir
from onnx_ir.passes.common import RemoveUnusedNodesPass, TopologicalSortPass

from .channel_shuffle import ChannelShuffleConvPass
from .constant_folding import ConstantFoldingPass
from .conv_epilogue import ConvEpiloguePass
from .conv_folding import ConvBatchNormPass, ConvBiasEpiloguePass
from .elementwise_fusion import ElementwiseFusionPass

DISABLE_ALL, BASIC, EXTENDED, ALL = 0, 1, 2, 99


def pipeline(level: int = ALL, steps: int = 10) -> list:
    """The passes for an optimization level, in the order they run within one step."""
    passes = []
    if level >= BASIC:
        passes += [ConstantFoldingPass(), RemoveUnusedNodesPass(), ConvBatchNormPass()]
    if level >= EXTENDED:
        passes += [ConvBiasEpiloguePass(), ElementwiseFusionPass(), ConvEpiloguePass(), ChannelShuffleConvPass()]
    return passes


def optimize(model: ir.Model, level: int = ALL, steps: int = 10) -> list[str]:
    """Optimize in place; returns the names of the passes that changed the graph."""
    passes = pipeline(level, steps)
    applied = []
    if passes and steps > 0:
        for _ in range(steps):
            changed = False
            for p in passes:
                if p(model).modified:
                    changed = True
                    applied.append(type(p).__name__)
            if not changed:
                break
    TopologicalSortPass()(model)
    return applied
