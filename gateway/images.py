"""Untrusted images in, clean images out.

Uploaded images are decoded, checked and re-encoded before anything else sees them: bytes and pixel
limits are enforced before decoding (decompression bombs never allocate), the first frame is taken,
the mode is normalised to RGB/RGBA (colour-managed to sRGB when an ICC profile is present), EXIF
orientation is applied, every piece of metadata (EXIF, GPS, XMP, ICC, text chunks) is dropped, the
image is downscaled to ``max_side`` and re-encoded.

Output format: PNG when the image has real transparency or came from a lossless format (PNG, GIF,
BMP) so screenshots and line art stay pixel-exact; JPEG quality 95 with 4:4:4 chroma when it came
from a lossy format (JPEG, WebP) — a photo re-encoded losslessly would be 5-10x larger for no gain
the diffusion model can see, and that size is paid again on every upload to ComfyUI.

Everything here is CPU-bound and blocking. Async callers use the ``*_async`` variants, which run the
sync functions in a worker thread.
"""

from __future__ import annotations

import asyncio
import io
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from PIL import Image, ImageCms, UnidentifiedImageError

from core.logs import get_logger
from gateway.errors import ImageRejected
from gateway.models import FailureCode

log = get_logger("gateway")

DEFAULT_MAX_BYTES = 20 * 1024 * 1024  # same defaults as core.config.LimitSettings
DEFAULT_MAX_PIXELS = 40_000_000
DEFAULT_MAX_SIDE = 2048
#: Formats we are willing to parse. Pillow knows dozens (EPS runs Ghostscript, TIFF has a long CVE
#: history); chat uploads are one of these.
ALLOWED_FORMATS: tuple[str, ...] = ("PNG", "JPEG", "WEBP", "GIF", "BMP")
_LOSSLESS_FORMATS = frozenset({"PNG", "GIF", "BMP"})
_EXIF_ORIENTATION = 0x0112
_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}

# ``warnings.catch_warnings`` swaps process-global state and is not thread-safe before Python 3.14;
# the sections that need it (header parsing, EXIF parsing) are cheap, so they are serialised.
_warnings_lock = threading.Lock()


@dataclass(frozen=True, slots=True)
class CleanImage:
    """A decoded, checked, metadata-free image, re-encoded as PNG or JPEG."""

    data: bytes
    width: int
    height: int
    mime: str


@contextmanager
def _guarded() -> Iterator[list[warnings.WarningMessage]]:
    """Run Pillow header/EXIF parsing with warnings captured instead of leaking.

    ``DecompressionBombWarning`` becomes an exception (so the caller can refuse); any other warning
    (corrupt EXIF, unidentified-format hints) is recorded for the log line.
    """
    with _warnings_lock, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        yield caught


def _reject(code: FailureCode, reason: str, **fields: object) -> ImageRejected:
    log.info("image_rejected", component="gateway", code=code.value, reason=reason, **fields)
    return ImageRejected(reason, code=code)


def _open(data: bytes, formats: tuple[str, ...]) -> Image.Image:
    """Parse the header only (no pixel data is decoded); refuse non-images and bombs."""
    try:
        with _guarded() as caught:
            img = Image.open(io.BytesIO(data), formats=formats)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise _reject(FailureCode.IMAGE_TOO_LARGE, "decompression_bomb", detail=str(exc)) from exc
    except UnidentifiedImageError as exc:
        raise _reject(FailureCode.INVALID_IMAGE, "not_an_image", bytes=len(data)) from exc
    except Exception as exc:  # a broken header can surface as any of a dozen types
        raise _reject(FailureCode.INVALID_IMAGE, "unreadable_header", error=repr(exc)) from exc
    if caught:
        log.debug("image_open_warnings", component="gateway", warnings=[str(w.message) for w in caught])
    return img


def _check_size(img: Image.Image, max_pixels: int) -> None:
    width, height = img.size
    if width <= 0 or height <= 0:
        raise _reject(FailureCode.INVALID_IMAGE, "empty_image", width=width, height=height)
    if width * height > max_pixels:
        raise _reject(
            FailureCode.IMAGE_TOO_LARGE, "too_many_pixels", width=width, height=height, max_pixels=max_pixels
        )


def _target_size(width: int, height: int, max_side: int) -> tuple[int, int]:
    longest = max(width, height)
    if longest <= max_side:
        return width, height
    scale = max_side / longest
    return max(1, round(width * scale)), max(1, round(height * scale))


def _orientation(img: Image.Image) -> int:
    try:
        with _guarded():
            value = img.getexif().get(_EXIF_ORIENTATION, 1)
    except Exception:  # corrupt EXIF: the image is still fine, only its orientation is unknown
        return 1
    return value if isinstance(value, int) else 1


def _to_srgb(img: Image.Image) -> Image.Image:
    """Colour-manage to sRGB when the image carries an ICC profile (phones shoot Display P3, CMYK
    JPEGs need their profile); ComfyUI ignores profiles, so without this colours would shift."""
    icc = img.info.get("icc_profile")
    if not icc or img.mode not in ("RGB", "RGBA", "CMYK"):
        return img
    out_mode = "RGBA" if img.mode == "RGBA" else "RGB"
    try:
        src = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        dst = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))
        converted = ImageCms.profileToProfile(img, src, dst, outputMode=out_mode)
    except Exception as exc:  # a broken profile is common and harmless: fall back to a plain convert
        log.debug("image_icc_ignored", component="gateway", error=repr(exc))
        return img
    return converted if converted is not None else img


def _normalise_mode(img: Image.Image) -> Image.Image:
    """Return an RGB or RGBA image; RGBA only when some pixel is actually transparent."""
    mode = img.mode
    if mode in ("P", "PA"):
        has_alpha = mode == "PA" or "transparency" in img.info
        img = img.convert("RGBA" if has_alpha else "RGB")
    elif mode in ("LA", "La", "RGBa"):
        img = img.convert("RGBA")
    elif mode.startswith("I;16") or mode in ("I", "F"):
        # 16/32-bit samples: scale into 8 bits instead of clipping everything above 255 to white.
        gray = img if mode == "F" else img.convert("F")
        extrema = gray.getextrema()
        high = float(extrema[1]) if isinstance(extrema[1], int | float) else 255.0
        top = 65535.0 if high > 255.0 else 255.0
        img = gray.point(lambda v: v * (255.0 / top)).convert("L").convert("RGB")
    elif mode in ("1", "L", "RGB") and "transparency" in img.info:
        img = img.convert("RGBA")  # a tRNS colour key: keep it as real alpha
    elif mode not in ("RGB", "RGBA"):
        img = img.convert("RGB")  # 1, L, CMYK without profile, YCbCr, LAB, HSV
    if img.mode == "RGBA":
        alpha_min, _ = img.getchannel("A").getextrema()
        if alpha_min == 255:
            img = img.convert("RGB")
    return img


def _strip(img: Image.Image) -> Image.Image:
    """A copy holding pixels only: no EXIF, GPS, XMP, ICC, text chunks, comments."""
    clean = Image.new(img.mode, img.size)
    clean.paste(img)
    clean.info.clear()
    return clean


def _encode(img: Image.Image, *, lossless: bool) -> tuple[bytes, str]:
    out = io.BytesIO()
    if img.mode == "RGBA" or lossless:
        img.save(out, format="PNG", compress_level=6)
        return out.getvalue(), "image/png"
    img.save(out, format="JPEG", quality=95, subsampling=0, optimize=True)
    return out.getvalue(), "image/jpeg"


def _decode(
    data: bytes, formats: tuple[str, ...], max_pixels: int, max_side: int
) -> tuple[Image.Image, tuple[int, int]]:
    """Open, size-check and verify ``data``, then decode its first frame (JPEG at a reduced scale when
    it will be shrunk anyway); with the size it had before that. Raises the refusals
    :func:`inspect_and_clean` documents."""
    probe_img = _open(data, formats)
    fmt = probe_img.format or "?"
    _check_size(probe_img, max_pixels)
    try:
        probe_img.verify()  # structural check (PNG chunk CRCs etc.) without decoding pixels
    except Exception as exc:
        raise _reject(FailureCode.INVALID_IMAGE, "verify_failed", format=fmt, error=repr(exc)) from exc

    img = _open(data, formats)  # verify() leaves the image unusable: reopen
    _check_size(img, max_pixels)
    source = img.size
    target = _target_size(*source, max_side)
    if fmt == "JPEG" and target != source:
        # Let libjpeg decode at 1/2, 1/4 or 1/8 scale (never below the target): less memory and time.
        img.draft(img.mode, target)
    try:
        img.load()  # first frame only: animated GIF/APNG/WebP are taken as a still
    except Exception as exc:
        raise _reject(FailureCode.INVALID_IMAGE, "decode_failed", format=fmt, error=repr(exc)) from exc
    return img, source


def inspect_and_clean(
    data: bytes,
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_side: int = DEFAULT_MAX_SIDE,
    formats: tuple[str, ...] = ALLOWED_FORMATS,
) -> CleanImage:
    """Decode, check and re-encode an untrusted image. Blocking; see :func:`inspect_and_clean_async`.

    Raises :class:`~gateway.errors.ImageRejected` with ``IMAGE_TOO_LARGE`` (bytes over ``max_bytes``,
    checked before decoding; pixels over ``max_pixels``, checked from the header before decoding;
    Pillow's own decompression-bomb guard) or ``INVALID_IMAGE`` (not an image, a format outside
    ``formats``, truncated or corrupt data).

    Pillow's global ``Image.MAX_IMAGE_PIXELS`` is left alone; its warning is turned into a refusal, so a
    ``max_pixels`` above it is effectively capped at it.
    """
    if len(data) > max_bytes:
        raise _reject(FailureCode.IMAGE_TOO_LARGE, "too_many_bytes", bytes=len(data), max_bytes=max_bytes)
    if not data:
        raise _reject(FailureCode.INVALID_IMAGE, "empty")

    img, (width, height) = _decode(data, formats, max_pixels, max_side)
    fmt = img.format or "?"
    orientation = _orientation(img)
    img = _normalise_mode(_to_srgb(img))
    transpose = _TRANSPOSE.get(orientation)
    if transpose is not None:
        img = img.transpose(transpose)
    target = _target_size(img.width, img.height, max_side)
    if target != img.size:
        img = img.resize(target, Image.Resampling.LANCZOS, reducing_gap=3.0)
    img = _strip(img)
    encoded, mime = _encode(img, lossless=fmt in _LOSSLESS_FORMATS)
    log.info(
        "image_cleaned",
        component="gateway",
        format=fmt,
        bytes_in=len(data),
        bytes=len(encoded),
        source_width=width,
        source_height=height,
        width=img.width,
        height=img.height,
        orientation=orientation,
        mime=mime,
    )
    return CleanImage(data=encoded, width=img.width, height=img.height, mime=mime)


def probe(data: bytes, *, formats: tuple[str, ...] | None = None) -> tuple[int, int, str]:
    """``(width, height, mime)`` from the header only — no pixel decoding. For trusted outputs
    (ComfyUI results); ``formats=None`` accepts any format Pillow can identify.

    Raises :class:`~gateway.errors.ImageRejected` (``INVALID_IMAGE``) when the data is not an image.
    """
    try:
        with _guarded():
            img = Image.open(io.BytesIO(data), formats=formats)
    except Image.DecompressionBombWarning:
        pass  # a header-only probe allocates nothing: large outputs (upscales) are fine here
    except Image.DecompressionBombError as exc:
        raise _reject(FailureCode.IMAGE_TOO_LARGE, "decompression_bomb", detail=str(exc)) from exc
    except Exception as exc:
        raise _reject(FailureCode.INVALID_IMAGE, "probe_failed", error=repr(exc)) from exc
    else:
        with img:
            mime = img.get_format_mimetype() or "application/octet-stream"
            return img.width, img.height, mime
    # The warning aborted open(); re-read the header without the bomb filter.
    with _warnings_lock, warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        with Image.open(io.BytesIO(data), formats=formats) as img:
            mime = img.get_format_mimetype() or "application/octet-stream"
            return img.width, img.height, mime


def make_preview_jpeg(
    data: bytes, *, max_side: int = 1024, quality: int = 80, max_pixels: int = DEFAULT_MAX_PIXELS * 4
) -> bytes:
    """A small JPEG for chat previews: first frame, orientation applied, alpha flattened onto white,
    longest side at most ``max_side``, no metadata. Raises :class:`~gateway.errors.ImageRejected`."""
    img = _open(data, ALLOWED_FORMATS)
    _check_size(img, max_pixels)
    target = _target_size(img.width, img.height, max_side)
    if img.format == "JPEG" and target != img.size:
        img.draft(img.mode, target)
    try:
        img.load()
    except Exception as exc:
        raise _reject(FailureCode.INVALID_IMAGE, "decode_failed", error=repr(exc)) from exc
    orientation = _orientation(img)
    img = _normalise_mode(img)
    transpose = _TRANSPOSE.get(orientation)
    if transpose is not None:
        img = img.transpose(transpose)
    img.thumbnail((max_side, max_side), Image.Resampling.LANCZOS, reducing_gap=2.0)
    if img.mode == "RGBA":
        flat = Image.new("RGB", img.size, (255, 255, 255))
        flat.paste(img, mask=img.getchannel("A"))
        img = flat
    out = io.BytesIO()
    _strip(img).save(out, format="JPEG", quality=quality, optimize=True)
    return out.getvalue()


async def inspect_and_clean_async(
    data: bytes,
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_side: int = DEFAULT_MAX_SIDE,
    formats: tuple[str, ...] = ALLOWED_FORMATS,
) -> CleanImage:
    """:func:`inspect_and_clean` in a worker thread. The byte limit is checked before the hop."""
    if len(data) > max_bytes:
        raise _reject(FailureCode.IMAGE_TOO_LARGE, "too_many_bytes", bytes=len(data), max_bytes=max_bytes)
    return await asyncio.to_thread(
        inspect_and_clean,
        data,
        max_bytes=max_bytes,
        max_pixels=max_pixels,
        max_side=max_side,
        formats=formats,
    )


async def probe_async(data: bytes, *, formats: tuple[str, ...] | None = None) -> tuple[int, int, str]:
    """:func:`probe` in a worker thread."""
    return await asyncio.to_thread(probe, data, formats=formats)


async def make_preview_jpeg_async(data: bytes, *, max_side: int = 1024, quality: int = 80) -> bytes:
    """:func:`make_preview_jpeg` in a worker thread."""
    return await asyncio.to_thread(make_preview_jpeg, data, max_side=max_side, quality=quality)


__all__ = [
    "ALLOWED_FORMATS",
    "DEFAULT_MAX_BYTES",
    "DEFAULT_MAX_PIXELS",
    "DEFAULT_MAX_SIDE",
    "CleanImage",
    "inspect_and_clean",
    "inspect_and_clean_async",
    "make_preview_jpeg",
    "make_preview_jpeg_async",
    "probe",
    "probe_async",
]
