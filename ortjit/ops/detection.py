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


def _axis_samples(start, bin_size, pooled, grid, size):
    """Bilinear taps along one axis for every (bin, sample): low/high indices and weights;
    samples beyond [-1, size] weigh 0."""
    pos = (start + np.arange(pooled)[:, None] * bin_size + (np.arange(grid)[None, :] + 0.5) * bin_size / grid).ravel()
    invalid = (pos < -1.0) | (pos > size)
    p = np.maximum(pos, 0.0)
    low = p.astype(np.int64)
    at_end = low >= size - 1
    low = np.where(at_end, size - 1, low)
    high = np.where(at_end, size - 1, low + 1)
    p = np.where(at_end, low, p)
    lw = p - low
    hw = 1.0 - lw
    return low, high, np.where(invalid, 0.0, lw), np.where(invalid, 0.0, hw)


@register("RoiAlign")
class RoiAlign(Op):
    """Average or max of bilinear samples over each region's output bins."""

    def infer(self, ctx):
        x, rois = ctx.inputs[0], ctx.inputs[1]
        if len(x.shape) != 4 or len(rois.shape) != 2 or rois.shape[1] != 4:
            raise ctx.fail(f"X {list(x.shape)} must be [N, C, H, W] and rois {list(rois.shape)} [R, 4]")
        return [Info((rois.shape[0], x.shape[1], int(ctx.attr("output_height", 1)), int(ctx.attr("output_width", 1))),
                     x.dtype)]

    def kernel(self, ctx):
        mode = ctx.attr("mode", "avg")
        mode = mode.decode() if isinstance(mode, bytes) else mode
        ctm = ctx.attr("coordinate_transformation_mode", "half_pixel" if ctx.opset >= 16 else "output_half_pixel")
        half_pixel = (ctm.decode() if isinstance(ctm, bytes) else ctm) == "half_pixel"
        ph_n, pw_n = int(ctx.attr("output_height", 1)), int(ctx.attr("output_width", 1))
        ratio, scale = int(ctx.attr("sampling_ratio", 0)), float(ctx.attr("spatial_scale", 1.0))

        def run(x, rois, batch_indices, y):
            h, w = x.shape[2:]
            check_batch = batch_indices.astype(np.int64)
            if check_batch.size and (check_batch.min() < 0 or check_batch.max() >= x.shape[0]):
                raise ctx.fail(f"batch_indices must be within [0, {x.shape[0] - 1}]")
            if not np.isfinite(rois).all():
                raise ctx.fail("rois must be finite")
            offset = 0.5 if half_pixel else 0.0
            for r in range(rois.shape[0]):
                x0, y0, x1, y1 = (float(v) * scale - offset for v in rois[r])
                rw, rh = x1 - x0, y1 - y0
                if not half_pixel:
                    rw, rh = max(rw, 1.0), max(rh, 1.0)
                bh, bw = rh / ph_n, rw / pw_n
                gh = ratio if ratio > 0 else int(np.ceil(rh / ph_n))
                gw = ratio if ratio > 0 else int(np.ceil(rw / pw_n))
                if gh <= 0 or gw <= 0:
                    y[r] = 0
                    continue
                ylo, yhi, ly, hy = _axis_samples(y0, bh, ph_n, gh, h)
                xlo, xhi, lx, hx = _axis_samples(x0, bw, pw_n, gw, w)
                img = x[check_batch[r]].astype(np.float64)
                taps = [(hy[:, None] * hx[None, :], img[:, ylo][:, :, xlo]),
                        (hy[:, None] * lx[None, :], img[:, ylo][:, :, xhi]),
                        (ly[:, None] * hx[None, :], img[:, yhi][:, :, xlo]),
                        (ly[:, None] * lx[None, :], img[:, yhi][:, :, xhi])]
                c = x.shape[1]
                if mode == "avg":
                    samples = sum(wt * v for wt, v in taps)
                    y[r] = samples.reshape(c, ph_n, gh, pw_n, gw).sum(axis=(2, 4)) / max(gh * gw, 1)
                else:
                    samples = np.maximum.reduce([wt * v for wt, v in taps])
                    y[r] = samples.reshape(c, ph_n, gh, pw_n, gw).max(axis=(2, 4))
        return run
