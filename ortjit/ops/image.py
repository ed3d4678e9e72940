"""ImageDecoder: encoded image bytes (JPEG, PNG, BMP, TIFF, WebP, PNM, JPEG 2000) to a uint8
[height, width, channels] tensor. Decoding is Pillow's (the optional extra `ortjit[image]`):
a well-kept decoder for all these formats is not code to write here."""
from __future__ import annotations

import io

import numpy as np

from ..errors import NotImplemented
from .base import Info, Op
from .registry import register


@register("ImageDecoder")
class ImageDecoder(Op):
    mode = "return"
    dynamic = True  # the output's shape is in the data

    def infer(self, ctx):
        if np.dtype(ctx.inputs[0].dtype) != np.uint8 or len(ctx.inputs[0].shape) != 1:
            raise ctx.fail(f"the encoded stream must be a 1-D uint8 tensor, got {ctx.inputs[0].dtype} "
                           f"of shape {list(ctx.inputs[0].shape)}")
        return [Info(None, np.dtype(np.uint8), dynamic=True)]

    def kernel(self, ctx):
        fmt = ctx.attr("pixel_format", "RGB")
        fmt = fmt.decode() if isinstance(fmt, bytes) else fmt
        if fmt not in ("RGB", "BGR", "Grayscale"):
            raise ctx.fail(f"pixel_format must be RGB, BGR or Grayscale, not {fmt!r}")
        try:
            from PIL import Image
        except ImportError:
            raise ctx.fail("decoding images needs Pillow: pip install 'ortjit[image]'", NotImplemented) from None

        def run(data):
            try:
                image = Image.open(io.BytesIO(np.ascontiguousarray(data).tobytes()))
                image.load()
            except Exception as e:  # noqa: BLE001 - Pillow raises many kinds for bad data
                raise ctx.fail(f"cannot decode the image: {e}") from None
            if fmt == "Grayscale":
                return np.array(image.convert("L"))[:, :, None]
            rgb = np.array(image.convert("RGB"))
            return np.ascontiguousarray(rgb[:, :, ::-1]) if fmt == "BGR" else rgb
        return run
