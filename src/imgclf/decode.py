"""Image bytes -> RGB ``size`` x ``size`` uint8: pure functions, no I/O.

JPEGs in YCbCr or grayscale go through libjpeg-turbo (simplejpeg) with the DCT scaling PIL's
``draft`` would pick, so the pixels equal PIL's path without its per-image overhead; anything
else (PNG, CMYK, palette...) goes through PIL."""

import io
import re
from dataclasses import dataclass

import numpy as np
import simplejpeg
from PIL import Image

FILTERS = {name: Image.Resampling[name.upper()]
           for name in ("nearest", "box", "bilinear", "hamming", "bicubic", "lanczos")}
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
_SIGNATURES = {b"\xff\xd8": "JPEG", b"\x89PNG\r\n\x1a\n": "PNG", b"GIF8": "GIF", b"BM": "BMP",
               b"II*\x00": "TIFF", b"MM\x00*": "TIFF"}


@dataclass(frozen=True)
class ResizeSpec:
    size: int
    filter: str = "box"
    draft: bool = True


def _decode_turbo(data: bytes, spec: ResizeSpec, out: np.ndarray | None) -> np.ndarray | None:
    """libjpeg-turbo's DCT-scaled decode of a YCbCr or grayscale JPEG, exactly as PIL's draft path
    would decode it (same scale, same upsampling, same DCT), or None when that path must be used;
    straight into ``out`` when the scaled image already has the target size."""
    if not data.startswith(b"\xff\xd8"):
        return None
    try:
        height, width, colorspace, _ = simplejpeg.decode_jpeg_header(data)
    except ValueError:
        return None
    if colorspace not in ("YCbCr", "Gray") or min(width, height) < 1:
        return None
    # (height, width) after PIL's ``draft``: the largest DCT scale 1/8, 1/4, 1/2 keeping both sides >= size
    factor = next((f for f in (8, 4, 2) if min(width, height) // spec.size >= f), 1) if spec.draft else 1
    shape = -(-height // factor), -(-width // factor)
    exact = shape == (spec.size, spec.size)
    try:
        image = simplejpeg.decode_jpeg(data, "RGB", min_height=shape[0], min_width=shape[1],
                                       buffer=out if exact else None)
    except ValueError:  # truncated or corrupt: PIL gives the error message
        return None
    if image.shape[:2] != shape:
        return None
    return image if exact else np.asarray(
        Image.fromarray(image).resize((spec.size, spec.size), FILTERS[spec.filter]), dtype=np.uint8)


def decode_resize(data: bytes, spec: ResizeSpec, out: np.ndarray | None = None) -> np.ndarray:
    """Decode any PIL-readable image (grayscale, CMYK, palette, PNG...) to RGB ``size``x``size`` uint8,
    written into ``out`` (and returned) when given."""
    image = _decode_turbo(data, spec, out)
    if image is None:
        image = _decode_pil(data, spec)
    if out is not None and not np.shares_memory(image, out):  # the turbo path decodes straight into ``out``
        out[...] = image
    return image if out is None else out


def _decode_pil(data: bytes, spec: ResizeSpec) -> np.ndarray:
    image = Image.open(io.BytesIO(data))
    if spec.draft and image.format == "JPEG":
        image.draft("RGB", (spec.size, spec.size))  # DCT scaling by 1/2, 1/4, 1/8: never below size
    image = image.convert("RGB")
    if image.size != (spec.size, spec.size):
        image = image.resize((spec.size, spec.size), FILTERS[spec.filter])
    return np.asarray(image, dtype=np.uint8)


def resize_array(images: np.ndarray, spec: ResizeSpec) -> np.ndarray:
    if images.shape[1:3] == (spec.size, spec.size):
        return images
    out = np.empty((len(images), spec.size, spec.size, 3), np.uint8)
    for i, image in enumerate(images):
        out[i] = np.asarray(Image.fromarray(image).resize((spec.size, spec.size), FILTERS[spec.filter]))
    return out


def what_is_wrong(data: bytes, exc: Exception) -> str:
    """Why ``data`` did not decode, in words: its format, whether it is cut short, and the
    decoder's own reason (never an object's repr)."""
    if not data:
        return "empty file"
    kind = next((name for signature, name in _SIGNATURES.items() if data.startswith(signature)), None)
    if kind is None and not (data[:4] == b"RIFF" and data[8:12] == b"WEBP"):
        return f"not a JPEG, PNG or other image format (it starts with {data[:8]!r})"
    reason = re.sub(r"\s*<[^<>]* at 0x[0-9a-f]+>", "", str(exc)).strip() or type(exc).__name__
    truncated = "truncated" in reason.lower() or (kind == "JPEG" and b"\xff\xd9" not in data[-1024:]) or (
        kind == "PNG" and b"IEND" not in data[-16:])
    return f"truncated {kind}" if truncated else f"corrupt {kind or 'WebP'}: {reason}"


def trailing_bytes(data: bytes) -> int:
    """Bytes after a JPEG's last end-of-image marker (FF D9); 0 for anything else."""
    end = data.rfind(b"\xff\xd9") if data.startswith(b"\xff\xd8") else -1
    return 0 if end < 0 else len(data) - end - 2
