"""gateway.images: untrusted uploads are checked before decoding, cleaned, and re-encoded."""

from __future__ import annotations

import io
import random
import struct
import zlib
from collections.abc import MutableMapping
from typing import Any

import pytest
from PIL import Image, ImageCms, PngImagePlugin
from structlog.testing import capture_logs

from gateway.errors import ImageRejected
from gateway.images import (
    CleanImage,
    inspect_and_clean,
    inspect_and_clean_async,
    make_preview_jpeg,
    make_preview_jpeg_async,
    probe,
    probe_async,
)
from gateway.models import FailureCode

# --- builders -----------------------------------------------------------------------------------


def encode(img: Image.Image, fmt: str = "PNG", **params: object) -> bytes:
    out = io.BytesIO()
    img.save(out, format=fmt, **params)
    return out.getvalue()


def gradient(size: tuple[int, int] = (64, 48), mode: str = "RGB") -> Image.Image:
    """Not a flat colour, so truncation and resampling show."""
    bands = [
        Image.linear_gradient("L").resize(size),
        Image.linear_gradient("L").rotate(90).resize(size),
        Image.radial_gradient("L").resize(size),
    ]
    return Image.merge("RGB", bands).convert(mode)


def _chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def png_claiming(width: int, height: int, *, rows: int = 16) -> bytes:
    """A 1-bit grayscale PNG whose IHDR claims ``width × height``; IDAT holds a valid zlib stream of
    all-black rows (only ``rows`` of them when the full image would be huge to build)."""
    row = b"\x00" + b"\x00" * ((width + 7) // 8)
    compressor = zlib.compressobj(9)
    idat = b"".join(compressor.compress(row) for _ in range(rows)) + compressor.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")


def opened(clean: CleanImage) -> Image.Image:
    img = Image.open(io.BytesIO(clean.data))
    img.load()
    return img


def rejected(data: bytes, code: FailureCode, **limits: int) -> list[MutableMapping[str, Any]]:
    with capture_logs() as logs, pytest.raises(ImageRejected) as info:
        inspect_and_clean(data, **limits)  # type: ignore[arg-type]
    assert info.value.code is code
    return [e for e in logs if e["event"] == "image_rejected"]


# --- refusals -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b"a lighthouse at dusk\n" * 10, id="text"),
        pytest.param(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<< /Type /Catalog >>\nendobj\n", id="pdf"),
        pytest.param(b"<!DOCTYPE html><html><body><img src=x onerror=alert(1)></body></html>", id="html"),
        pytest.param(b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n", id="eps_not_parsed"),
        pytest.param(b"\x89PNG\r\n\x1a\n", id="png_signature_only"),
        pytest.param(b"", id="empty"),
    ],
)
def test_non_images_are_invalid(data: bytes) -> None:
    rejected(data, FailureCode.INVALID_IMAGE)


def test_truncated_png_is_invalid() -> None:
    data = encode(gradient((200, 200)))
    rejected(data[: len(data) // 2], FailureCode.INVALID_IMAGE)


def test_truncated_jpeg_is_invalid() -> None:
    data = encode(gradient((200, 200)), "JPEG", quality=90)
    rejected(data[: len(data) // 2], FailureCode.INVALID_IMAGE)


def test_png_with_bad_crc_is_invalid() -> None:
    data = bytearray(encode(gradient()))
    data[40] ^= 0xFF  # inside the IDAT payload: its CRC no longer matches
    rejected(bytes(data), FailureCode.INVALID_IMAGE)


def test_file_over_max_bytes_is_refused_before_decoding() -> None:
    data = encode(gradient((8, 8))) + b"\x00" * (12 * 1024 * 1024)
    events = rejected(data, FailureCode.IMAGE_TOO_LARGE, max_bytes=10 * 1024 * 1024)
    assert events[0]["reason"] == "too_many_bytes"


def test_decompression_bomb_50000x50000_is_refused_from_the_header() -> None:
    # 2.5 gigapixels: Pillow's DecompressionBombError fires at open(), before any pixel is allocated.
    data = png_claiming(50_000, 50_000)
    assert len(data) < 10_000
    events = rejected(data, FailureCode.IMAGE_TOO_LARGE)
    assert events[0]["reason"] == "decompression_bomb"


def test_bomb_between_pillow_warning_and_error_is_refused_not_warned() -> None:
    # 100 Mpx: above Image.MAX_IMAGE_PIXELS (warning zone) — must be a refusal, never a leaked warning.
    data = png_claiming(10_000, 10_000)
    events = rejected(data, FailureCode.IMAGE_TOO_LARGE, max_pixels=200_000_000)
    assert events[0]["reason"] == "decompression_bomb"


def test_real_all_black_bomb_over_max_pixels_is_refused_before_load() -> None:
    # A complete, valid 9000x9000 image (81 Mpx) that compresses to a few KB.
    data = png_claiming(9_000, 9_000, rows=9_000)
    assert len(data) < 100_000
    events = rejected(data, FailureCode.IMAGE_TOO_LARGE, max_pixels=40_000_000)
    assert events[0]["reason"] == "too_many_pixels"


def test_pillow_global_limit_is_untouched() -> None:
    before = Image.MAX_IMAGE_PIXELS
    with pytest.raises(ImageRejected):
        inspect_and_clean(png_claiming(50_000, 50_000))
    inspect_and_clean(encode(gradient()))
    assert before == Image.MAX_IMAGE_PIXELS


def test_disallowed_format_is_invalid() -> None:
    data = encode(gradient(), "TIFF")
    rejected(data, FailureCode.INVALID_IMAGE)


# --- cleaning -----------------------------------------------------------------------------------


def test_plain_png_round_trips_pixel_exact() -> None:
    src = gradient()
    clean = inspect_and_clean(encode(src))
    assert (clean.width, clean.height, clean.mime) == (64, 48, "image/png")
    out = opened(clean)
    assert out.mode == "RGB"
    assert out.tobytes() == src.tobytes()


def test_jpeg_stays_jpeg_high_quality() -> None:
    clean = inspect_and_clean(encode(gradient(), "JPEG", quality=95))
    assert clean.mime == "image/jpeg"
    assert opened(clean).format == "JPEG"


def test_cmyk_jpeg_becomes_rgb() -> None:
    data = encode(Image.new("CMYK", (32, 32), (0, 255, 255, 0)), "JPEG", quality=95)
    out = opened(inspect_and_clean(data))
    assert out.mode == "RGB"
    r, g, b = out.getpixel((16, 16))  # type: ignore[misc]
    assert r > 240 and g < 20 and b < 20


def test_exif_gps_is_dropped_and_orientation_applied() -> None:
    img = Image.new("RGB", (40, 20), (0, 0, 255))
    img.putpixel((0, 0), (255, 0, 0))
    img.paste((255, 0, 0), (0, 0, 4, 4))
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90° clockwise to display
    exif[0x010F] = "ACME Phone"  # Make
    gps = exif.get_ifd(0x8825)
    gps[1] = "N"
    gps[2] = (55.0, 45.0, 21.0)
    gps[3] = "E"
    gps[4] = (37.0, 37.0, 4.0)
    data = encode(img, "JPEG", quality=95, exif=exif)
    assert Image.open(io.BytesIO(data)).getexif().get_ifd(0x8825)  # the fixture really has GPS

    clean = inspect_and_clean(data)
    out = opened(clean)
    assert (clean.width, clean.height) == (20, 40)  # rotated
    r, g, b = out.getpixel((18, 1))  # type: ignore[misc]  # stored top-left lands top-right
    assert r > 200 and b < 60
    assert not out.getexif()
    assert "exif" not in out.info
    assert b"Exif" not in clean.data and b"ACME" not in clean.data


def test_png_text_chunks_and_icc_profile_are_dropped() -> None:
    info = PngImagePlugin.PngInfo()
    info.add_text("Comment", "secret-location")
    info.add_itxt("prompt", "secret-workflow")
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    clean = inspect_and_clean(encode(gradient(), "PNG", pnginfo=info, icc_profile=icc))
    out = opened(clean)
    assert b"secret" not in clean.data
    assert "icc_profile" not in out.info
    assert not {"Comment", "prompt"} & set(out.info)


def test_large_allowed_image_is_downscaled_to_max_side() -> None:
    data = encode(gradient((3000, 1800)), "JPEG", quality=90)
    clean = inspect_and_clean(data, max_side=1024)
    assert (clean.width, clean.height) == (1024, 614)
    assert opened(clean).size == (1024, 614)


def test_portrait_png_downscaled_by_longest_side() -> None:
    clean = inspect_and_clean(encode(gradient((300, 900))), max_side=300)
    assert (clean.width, clean.height) == (100, 300)


def test_alpha_is_preserved_as_png() -> None:
    img = gradient(mode="RGBA")
    img.putpixel((5, 5), (10, 20, 30, 0))
    img.putpixel((6, 6), (10, 20, 30, 128))
    clean = inspect_and_clean(encode(img))
    out = opened(clean)
    assert clean.mime == "image/png" and out.mode == "RGBA"
    assert out.getpixel((5, 5))[3] == 0  # type: ignore[index]
    assert out.getpixel((6, 6))[3] == 128  # type: ignore[index]


def test_fully_opaque_alpha_is_dropped() -> None:
    out = opened(inspect_and_clean(encode(gradient(mode="RGBA"))))
    assert out.mode == "RGB"


def test_palette_with_transparency_becomes_rgba_without_warning() -> None:
    img = Image.new("P", (16, 16), 1)
    img.putpalette([0, 0, 0, 255, 0, 0] + [0] * (256 * 3 - 6))
    img.putpixel((0, 0), 0)
    clean = inspect_and_clean(encode(img, "PNG", transparency=0))
    out = opened(clean)
    assert out.mode == "RGBA"
    assert out.getpixel((0, 0))[3] == 0  # type: ignore[index]
    assert out.getpixel((8, 8)) == (255, 0, 0, 255)


def test_rgb_colour_key_becomes_alpha() -> None:
    img = Image.new("RGB", (8, 8), (0, 255, 0))
    img.putpixel((0, 0), (1, 2, 3))
    out = opened(inspect_and_clean(encode(img, "PNG", transparency=(1, 2, 3))))
    assert out.mode == "RGBA"
    assert out.getpixel((0, 0))[3] == 0  # type: ignore[index]
    assert out.getpixel((4, 4)) == (0, 255, 0, 255)


def test_rgba_with_icc_profile_keeps_alpha() -> None:
    img = gradient(mode="RGBA")
    img.putpixel((3, 3), (200, 100, 50, 64))
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    out = opened(inspect_and_clean(encode(img, "PNG", icc_profile=icc)))
    assert out.mode == "RGBA" and "icc_profile" not in out.info
    assert out.getpixel((3, 3))[3] == 64  # type: ignore[index]


def test_la_becomes_rgba() -> None:
    img = Image.new("LA", (8, 8), (200, 100))
    out = opened(inspect_and_clean(encode(img)))
    assert out.mode == "RGBA"
    assert out.getpixel((1, 1)) == (200, 200, 200, 100)


def test_16_bit_grayscale_is_scaled_not_clipped() -> None:
    img = Image.new("I;16", (8, 8), 32768)
    out = opened(inspect_and_clean(encode(img)))
    assert out.mode == "RGB"
    r, g, b = out.getpixel((0, 0))  # type: ignore[misc]
    assert 120 <= r <= 135 and r == g == b


def test_animated_gif_takes_first_frame() -> None:
    frames = [Image.new("RGB", (16, 16), c) for c in ((255, 0, 0), (0, 0, 255))]
    data = encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    out = opened(inspect_and_clean(data))
    assert getattr(out, "n_frames", 1) == 1
    r, _, b = out.convert("RGB").getpixel((8, 8))  # type: ignore[misc]
    assert r > 200 and b < 50


def test_clean_logs_an_event() -> None:
    with capture_logs() as logs:
        inspect_and_clean(encode(gradient()))
    (event,) = [e for e in logs if e["event"] == "image_cleaned"]
    assert event["width"] == 64 and event["format"] == "PNG" and event["component"] == "gateway"


async def test_async_clean_runs_and_refuses() -> None:
    clean = await inspect_and_clean_async(encode(gradient()))
    assert clean.width == 64
    with pytest.raises(ImageRejected) as info:
        await inspect_and_clean_async(b"x" * 100, max_bytes=10)
    assert info.value.code is FailureCode.IMAGE_TOO_LARGE


# --- outputs: probe and previews ----------------------------------------------------------------


def test_probe_reads_the_header() -> None:
    assert probe(encode(gradient((100, 50)))) == (100, 50, "image/png")
    assert probe(encode(gradient((30, 20)), "JPEG")) == (30, 20, "image/jpeg")
    assert probe(encode(gradient((30, 20)), "WEBP")) == (30, 20, "image/webp")


def test_probe_accepts_large_outputs_without_decoding() -> None:
    assert probe(png_claiming(10_000, 10_000)) == (10_000, 10_000, "image/png")


def test_probe_refuses_garbage() -> None:
    with pytest.raises(ImageRejected) as info:
        probe(b"<html></html>")
    assert info.value.code is FailureCode.INVALID_IMAGE


async def test_probe_async() -> None:
    assert await probe_async(encode(gradient((7, 9)))) == (7, 9, "image/png")


def test_preview_is_small_jpeg_flattened_on_white() -> None:
    img = Image.new("RGBA", (2000, 1000), (0, 0, 0, 0))
    data = make_preview_jpeg(encode(img), max_side=256)
    out = Image.open(io.BytesIO(data))
    assert out.format == "JPEG" and out.size == (256, 128)
    r, g, b = out.getpixel((10, 10))  # type: ignore[misc]
    assert min(r, g, b) > 245


async def test_preview_async() -> None:
    data = await make_preview_jpeg_async(encode(gradient((640, 480)), "JPEG"), max_side=320)
    assert Image.open(io.BytesIO(data)).size == (320, 240)


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "GIF", "WEBP", "BMP"])
def test_mutated_files_only_ever_raise_image_rejected(fmt: str) -> None:
    # Deterministic fuzz: flipped bytes and cut tails must end in a clean image or a refusal with a code,
    # never another exception type or a leaked warning (filterwarnings=error would turn it into one).
    rng = random.Random(fmt)
    original = encode(gradient((48, 32)), fmt)
    for _ in range(150):
        data = bytearray(original)
        for _ in range(rng.randint(1, 4)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        if rng.random() < 0.3:
            del data[rng.randrange(8, len(data)) :]
        try:
            clean = inspect_and_clean(bytes(data))
        except ImageRejected as exc:
            assert exc.code in (FailureCode.INVALID_IMAGE, FailureCode.IMAGE_TOO_LARGE)
        else:
            assert clean.width >= 1 and clean.mime in ("image/png", "image/jpeg")
