"""The generated docs match the code they describe."""
import os
import sys

ROOT = os.path.join(os.path.dirname(__file__), "..")
sys.path.insert(0, os.path.join(ROOT, "scripts"))

import list_ops  # noqa: E402


def test_ops_list_is_current():
    with open(os.path.join(ROOT, "docs", "ops.md")) as f:
        assert f.read() == list_ops.render(), "docs/ops.md is stale: run python scripts/list_ops.py"
