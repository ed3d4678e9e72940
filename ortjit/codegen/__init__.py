"""Codegen: scalar programs (fused elementwise groups) -> kernel source -> compiled kernel.

elementwise.py is shared by every backend: it collapses broadcast dims and renders the
loop body. A backend folder (cpu/) holds the loop templates and the compile step.
"""
