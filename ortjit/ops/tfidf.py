"""TfIdfVectorizer: counts, per row, the n-grams of a pool (with up to max_skip_count
skipped items between their members) and weighs the counts (TF, IDF or TFIDF)."""
from __future__ import annotations

import numpy as np

from .base import Info, Op
from .registry import register


def _text(v):
    return v.decode() if isinstance(v, bytes) else v


@register("TfIdfVectorizer")
class TfIdfVectorizer(Op):
    def _table(self, ctx):
        """n-gram (a tuple of items) -> output column."""
        strings = ctx.attr("pool_strings")
        pool = [_text(s) for s in strings] if strings is not None else list(ctx.attr("pool_int64s") or [])
        counts = list(ctx.attr("ngram_counts"))  # start in the pool of the 1-grams, 2-grams, ...
        indexes = list(ctx.attr("ngram_indexes"))
        table, k = {}, 0
        for n, start in enumerate(counts, 1):
            end = counts[n] if n < len(counts) else len(pool)
            for i in range(start, end, n):
                table[tuple(pool[i:i + n])] = indexes[k]
                k += 1
        return table, max(indexes) + 1 if indexes else 0

    def infer(self, ctx):
        x = ctx.inputs[0]
        if len(x.shape) > 2:
            raise ctx.fail(f"the input must be [C] or [N, C], got {list(x.shape)}")
        _, size = self._table(ctx)
        shape = (x.shape[0], size) if len(x.shape) == 2 else (size,)
        return [Info(shape, np.dtype(np.float32))]

    def kernel(self, ctx):
        table, size = self._table(ctx)
        lo, hi = int(ctx.attr("min_gram_length")), int(ctx.attr("max_gram_length"))
        skips = int(ctx.attr("max_skip_count", 0))
        mode = _text(ctx.attr("mode", "TF"))
        weights = ctx.attr("weights")
        weights = np.ones(size, np.float32) if weights is None else np.asarray(weights, np.float32)

        def count_row(row, out):
            items = [_text(v) if isinstance(v, (bytes, str)) else int(v) for v in row]
            for start in range(len(items)):
                for skip in range(skips + 1):
                    step = skip + 1
                    for n in range(lo, hi + 1):
                        if n == 1 and skip:  # a 1-gram has no gaps: count it once per position
                            continue
                        end = start + (n - 1) * step
                        if end >= len(items):
                            break
                        col = table.get(tuple(items[start:end + 1:step]))
                        if col is not None:
                            out[col] += 1

        def run(x, y):
            rows = x.reshape(1, -1) if x.ndim < 2 else x
            counts = np.zeros((rows.shape[0], size), np.float32)
            for r in range(rows.shape[0]):
                count_row(rows[r], counts[r])
            if mode == "IDF":
                counts = (counts > 0) * weights
            elif mode == "TFIDF":
                counts = counts * weights
            y[...] = counts.reshape(y.shape)
        return run
