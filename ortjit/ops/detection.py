"""NonMaxSuppression: per batch and class, boxes by descending score (ties: lower index
first), each kept unless it overlaps an already kept box by more than iou_threshold."""
from __future__ import annotations

import numpy as np

from .base import Info, Op
from .registry import register


def _corners(boxes: np.ndarray, center_point_box: bool) -> np.ndarray:
    """(y1, x1, y2, x2) with y1 <= y2 and x1 <= x2, whatever the input format."""
    b = boxes.astype(np.float64)
    if center_point_box:  # (x_center, y_center, width, height)
        xc, yc, w, h = b[:, 0], b[:, 1], b[:, 2], b[:, 3]
        return np.stack([yc - h / 2, xc - w / 2, yc + h / 2, xc + w / 2], axis=1)
    return np.stack([np.minimum(b[:, 0], b[:, 2]), np.minimum(b[:, 1], b[:, 3]),
                     np.maximum(b[:, 0], b[:, 2]), np.maximum(b[:, 1], b[:, 3])], axis=1)


def _iou(box: np.ndarray, others: np.ndarray) -> np.ndarray:
    ih = np.minimum(box[2], others[:, 2]) - np.maximum(box[0], others[:, 0])
    iw = np.minimum(box[3], others[:, 3]) - np.maximum(box[1], others[:, 1])
    inter = np.where((ih > 0) & (iw > 0), ih * iw, 0.0)
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (others[:, 2] - others[:, 0]) * (others[:, 3] - others[:, 1])
    union = area + areas - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where((inter > 0) & (area > 0) & (areas > 0) & (union > 0), inter / union, 0.0)


@register("NonMaxSuppression")
class NonMaxSuppression(Op):
    mode = "return"
    dynamic = True  # the number of kept boxes is in the data

    def infer(self, ctx):
        boxes, scores = ctx.inputs[0], ctx.inputs[1]
        if len(boxes.shape) != 3 or boxes.shape[2] != 4 or len(scores.shape) != 3 or \
                scores.shape[0] != boxes.shape[0] or scores.shape[2] != boxes.shape[1]:
            raise ctx.fail(f"boxes {list(boxes.shape)} must be [B, N, 4] and scores {list(scores.shape)} [B, C, N]")
        return [Info(None, np.dtype(np.int64), dynamic=True)]

    def kernel(self, ctx):
        center = bool(ctx.attr("center_point_box", 0))

        def scalar(v, default):
            return default if v is None or np.size(v) == 0 else np.asarray(v).reshape(-1)[0]

        def run(boxes, scores, max_out=None, iou_threshold=None, score_threshold=None):
            limit = int(scalar(max_out, 0))
            iou_t = float(scalar(iou_threshold, 0.0))
            selected = []
            for b in range(boxes.shape[0]):
                corners = _corners(boxes[b], center)
                for c in range(scores.shape[1]):
                    s = scores[b, c]
                    order = np.argsort(-s.astype(np.float64), kind="stable")
                    if score_threshold is not None and np.size(score_threshold):
                        order = order[s[order] > float(scalar(score_threshold, 0.0))]
                    kept: list = []
                    for i in order:
                        if len(kept) >= limit:
                            break
                        if not kept or not np.any(_iou(corners[i], corners[kept]) > iou_t):
                            kept.append(i)
                            selected.append((b, c, i))
            return np.array(selected, np.int64).reshape(-1, 3)
        return run
