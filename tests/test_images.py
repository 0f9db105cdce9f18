"""The decoder: allow-list from bytes, size caps before pixels, modes, frames, EXIF, resizing, names.

Every file is built in the test (Pillow, zlib, struct); nothing is read from disk or the network.
"""

from __future__ import annotations

import hashlib
import io
import resource
import struct
import tracemalloc
import warnings
import zlib
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from PIL import Image, ImageFile, JpegImagePlugin

from extractor.errors import LayerExplorerError
from extractor.images import (
    ALLOWED_EXTENSIONS,
    ALLOWED_FORMATS,
    DEFAULT_MAX_PIXELS,
    MAX_ASPECT_RATIO,
    RESIZE_POLICIES,
    CorruptImageError,
    DecodedImage,
    EmptyImageError,
    ImageTooLargeError,
    ImageTooSmallError,
    InvalidImageError,
    InvalidResizeError,
    UnsupportedFormatError,
    content_hash,
    decode_image,
    load_image,
    resize_image,
    sanitize_name,
)

# --------------------------------------------------------------------------------------------
# builders


def encode(im: Image.Image, fmt: str, **kwargs) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **kwargs)
    return buf.getvalue()


def solid(color, size=(16, 12), mode="RGB") -> Image.Image:
    return Image.new(mode, size, color)


def noise(h=48, w=64, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _chunk(tag: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)


def bilevel_png(width: int, height: int) -> bytes:
    """A valid, all-black 1-bit PNG of any declared size: a few KB on disk, width*height pixels decoded."""
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    row = b"\x00" * (1 + (width + 7) // 8)
    comp = zlib.compressobj(6)
    body = b"".join(comp.compress(row) for _ in range(height)) + comp.flush()
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", body) + _chunk(b"IEND", b"")


@pytest.fixture(scope="module")
def png_400mp() -> bytes:
    return bilevel_png(20000, 20000)


@pytest.fixture
def png_bytes() -> bytes:
    return encode(Image.fromarray(noise()), "PNG")


@pytest.fixture
def jpeg_bytes() -> bytes:
    return encode(Image.fromarray(noise(240, 320)), "JPEG", quality=90)


# --------------------------------------------------------------------------------------------
# the public surface


def test_constants_match_the_documented_surface():
    assert ALLOWED_FORMATS == frozenset({"PNG", "JPEG", "WEBP", "BMP", "GIF", "TIFF", "MPO"})
    assert ALLOWED_EXTENSIONS == (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff")
    assert DEFAULT_MAX_PIXELS == 40_000_000
    assert RESIZE_POLICIES == ("stretch", "center-crop", "pad", "native")


def test_every_refusal_is_a_layer_explorer_value_error():
    for cls in (EmptyImageError, UnsupportedFormatError, CorruptImageError, ImageTooLargeError, ImageTooSmallError):
        assert issubclass(cls, InvalidImageError)
    assert issubclass(InvalidImageError, LayerExplorerError)
    assert issubclass(InvalidResizeError, LayerExplorerError)
    assert issubclass(LayerExplorerError, ValueError)


def test_decode_png_gives_read_only_rgb_uint8(png_bytes):
    img = decode_image(png_bytes, "noise.png")
    assert isinstance(img, DecodedImage)
    assert img.pixels.shape == (48, 64, 3) and img.pixels.dtype == np.uint8
    np.testing.assert_array_equal(img.pixels, noise())
    assert img.name == "noise.png" and img.notes == ()
    with pytest.raises(ValueError):
        img.pixels[0, 0, 0] = 1  # shared, often cached: read-only by design


# --------------------------------------------------------------------------------------------
# refusals: empty, not an image, off the allow-list


def test_zero_bytes_is_empty_image_error():
    with pytest.raises(EmptyImageError, match=r"^x\.png: the file is empty \(0 bytes\)"):
        decode_image(b"", "x.png")


def test_text_named_png_is_unsupported():
    with pytest.raises(UnsupportedFormatError, match=r"looks like text\). Use PNG, JPEG, WebP, BMP, GIF or TIFF\."):
        decode_image(b"just some notes, definitely not pixels\n", "cat.png")


def test_text_starting_like_a_bmp_is_unsupported_not_corrupt():
    # Pillow's BMP check only looks at "BM"; the parser then fails. That is not a damaged image.
    with pytest.raises(UnsupportedFormatError, match="looks like text"):
        decode_image(b"BMW is a car brand and this is a text file", "car.bmp")


def test_random_bytes_named_png_are_unsupported():
    data = bytes(np.random.default_rng(3).integers(0, 256, 4096, dtype=np.uint8))
    with pytest.raises(UnsupportedFormatError, match=r"^noise\.png: this is not an image Layer Explorer can read"):
        decode_image(data, "noise.png")


def test_svg_is_refused_with_its_name():
    svg = b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"/>'
    with pytest.raises(UnsupportedFormatError) as info:
        decode_image(svg, "cat.png")
    assert str(info.value) == ("cat.png: this is not an image Layer Explorer can read (looks like SVG). "
                               "Use PNG, JPEG, WebP, BMP, GIF or TIFF.")


def test_heic_like_file_is_refused():
    heic = struct.pack(">I", 24) + b"ftypheic" + b"\x00\x00\x00\x00mif1heic" + b"\x00" * 64
    with pytest.raises(UnsupportedFormatError, match="HEIC"):
        decode_image(heic, "IMG_0001.HEIC")


@pytest.fixture
def spy_on_risky_plugins(monkeypatch):
    """Replace the PSD/EPS/PDF openers with spies: the allow-list must never even try them."""
    Image.init()
    called = []
    for fmt in ("PSD", "EPS", "PDF", "ICO", "TGA"):
        if fmt in Image.OPEN:
            factory, accept = Image.OPEN[fmt]

            def spy(fp, filename=None, _fmt=fmt, _factory=factory):
                called.append(_fmt)
                return _factory(fp, filename)

            monkeypatch.setitem(Image.OPEN, fmt, (spy, accept))
    return called


def test_psd_is_refused_without_reaching_the_psd_parser(spy_on_risky_plugins):
    psd = b"8BPS" + struct.pack(">H6sHIIHH", 1, b"\0" * 6, 3, 8, 8, 8, 3) + b"\x00" * 64
    with pytest.raises(UnsupportedFormatError, match="Photoshop PSD"):
        decode_image(psd, "layers.psd")
    assert spy_on_risky_plugins == []


def test_real_eps_is_refused_without_reaching_the_eps_parser(spy_on_risky_plugins):
    eps = encode(solid("red"), "EPS")
    assert eps.startswith(b"%!PS")
    with pytest.raises(UnsupportedFormatError, match="EPS/PostScript"):
        decode_image(eps, "logo.png")
    assert spy_on_risky_plugins == []


def test_real_pdf_is_refused_without_reaching_a_parser(spy_on_risky_plugins):
    pdf = encode(solid("red"), "PDF")
    with pytest.raises(UnsupportedFormatError, match=r"looks like PDF"):
        decode_image(pdf, "scan.jpg")
    assert spy_on_risky_plugins == []


def test_allowed_format_that_pillow_can_write_but_we_do_not_read_is_refused():
    ico = encode(solid("red", (16, 16)), "ICO")
    with pytest.raises(UnsupportedFormatError, match="ICO"):
        decode_image(ico, "favicon.png")


def test_extension_is_irrelevant_png_named_jpg_decodes(png_bytes):
    assert decode_image(png_bytes, "actually_a_png.jpg").pixels.shape == (48, 64, 3)


@pytest.mark.parametrize("fmt, kwargs", [("PNG", {}), ("JPEG", {"quality": 95}), ("WEBP", {"lossless": True}),
                                         ("BMP", {}), ("GIF", {}), ("TIFF", {})])
def test_each_allowed_format_decodes(fmt, kwargs):
    img = decode_image(encode(solid((200, 30, 30), (20, 10)), fmt, **kwargs), f"x.{fmt.lower()}")
    assert img.pixels.shape == (10, 20, 3)
    assert np.abs(img.pixels.astype(int) - [200, 30, 30]).max() <= 8


# --------------------------------------------------------------------------------------------
# broken data


def test_truncated_jpeg_is_corrupt(jpeg_bytes):
    with pytest.raises(CorruptImageError, match=r"^photo\.jpg: .*damaged or incomplete"):
        decode_image(jpeg_bytes[: len(jpeg_bytes) // 2], "photo.jpg")


def test_truncated_png_is_corrupt(png_bytes):
    with pytest.raises(CorruptImageError, match=r"^shot\.png: .*damaged or incomplete"):
        decode_image(png_bytes[: len(png_bytes) // 2], "shot.png")


def test_png_cut_inside_its_header_is_corrupt_not_unsupported(png_bytes):
    with pytest.raises(CorruptImageError, match="PNG file is damaged"):
        decode_image(png_bytes[:20], "cut.png")


def test_png_with_a_bad_checksum_is_corrupt(png_bytes):
    broken = bytearray(png_bytes)
    broken[40] ^= 0xFF  # inside IDAT: zlib or CRC fails at load()
    with pytest.raises(CorruptImageError):
        decode_image(bytes(broken), "flipped.png")


def test_decoder_never_turns_on_truncated_loading(jpeg_bytes):
    with pytest.raises(CorruptImageError):
        decode_image(jpeg_bytes[:-200], "x.jpg")
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False


# --------------------------------------------------------------------------------------------
# size caps, before decoding


def test_400_megapixel_png_is_refused_from_its_header_with_flat_memory(png_400mp, monkeypatch):
    assert len(png_400mp) < 200_000  # tiny on disk, 400 MP (1.2 GB as RGB) if decoded
    loads = []
    monkeypatch.setattr(ImageFile.ImageFile, "load", lambda self: loads.append(1))
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    tracemalloc.start()
    try:
        with pytest.raises(ImageTooLargeError) as info:
            decode_image(png_400mp, "big.png")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    rss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    assert loads == []  # refused before a single pixel was decoded
    assert peak < 5 * 2**20
    assert rss_after - rss_before < 100 * 1024
    assert str(info.value) == "big.png: the image is 400 MP, over the 40 MP limit; downscale it before uploading."


def test_400_megapixel_png_refused_even_when_the_caller_allows_more(png_400mp):
    # Above 2 × Image.MAX_IMAGE_PIXELS Pillow itself raises DecompressionBombError; it must arrive as ours.
    with pytest.raises(ImageTooLargeError, match="400 MP"):
        decode_image(png_400mp, "big.png", max_pixels=10**12)


def test_90_megapixel_png_in_pillows_warning_zone_is_refused():
    data = bilevel_png(9500, 9500)
    with pytest.raises(ImageTooLargeError, match=r"the image is 90 MP"):
        decode_image(data, "wide.png")


def test_pillow_bomb_warning_is_an_error_even_under_a_generous_cap():
    # 90 MP is over Image.MAX_IMAGE_PIXELS (~89 MP) but under 2×: Pillow only *warns*. The decoder
    # must treat that warning as an error, without changing any global setting.
    limit_before = Image.MAX_IMAGE_PIXELS
    filters_before = list(warnings.filters)
    with pytest.raises(ImageTooLargeError):
        decode_image(bilevel_png(9500, 9500), "wide.png", max_pixels=150_000_000)
    assert Image.MAX_IMAGE_PIXELS == limit_before
    assert warnings.filters == filters_before


def test_49_megapixel_png_is_over_our_own_40_mp_cap():
    with pytest.raises(ImageTooLargeError) as info:
        decode_image(bilevel_png(7000, 7000), "../uploads/big.png")
    assert str(info.value) == "big.png: 7000×7000 = 49 MP is over the 40 MP limit; downscale it before uploading."


def test_max_pixels_is_honoured(png_bytes):
    with pytest.raises(ImageTooLargeError, match=r"64×48"):
        decode_image(png_bytes, "x.png", max_pixels=1000)
    assert decode_image(png_bytes, "x.png", max_pixels=64 * 48).pixels.shape == (48, 64, 3)


def test_1x60000_strip_is_refused_by_aspect_ratio():
    strip = encode(solid(255, (1, 60000), "L"), "PNG")
    with pytest.raises(ImageTooLargeError, match=r"1×60000 is a 60000:1 strip; at most 50:1"):
        decode_image(strip, "strip.png")


def test_60000x1_strip_is_refused_too():
    with pytest.raises(ImageTooLargeError, match="60000:1"):
        decode_image(encode(solid(255, (60000, 1), "L"), "PNG"), "strip.png")


def test_aspect_ratio_boundary_50_to_1_is_accepted_51_is_not():
    assert MAX_ASPECT_RATIO == 50
    assert decode_image(encode(solid(9, (2, 100), "L"), "PNG"), "ok.png").pixels.shape == (100, 2, 3)
    with pytest.raises(ImageTooLargeError):
        decode_image(encode(solid(9, (2, 102), "L"), "PNG"), "no.png")


def test_1x1_image_is_accepted_with_a_note_and_upscales_to_a_flat_image():
    data = encode(solid((10, 200, 30), (1, 1)), "PNG")
    img = decode_image(data, "pixel.png")
    assert img.pixels.shape == (1, 1, 3)
    assert any("1×1" in n and "upscaled" in n for n in img.notes)
    for policy in ("stretch", "center-crop", "pad"):
        out = load_image(data, "pixel.png", (32, 32), policy).pixels
        assert out.shape == (32, 32, 3)
        assert (out == [10, 200, 30]).all(), policy


# --------------------------------------------------------------------------------------------
# modes


def test_rgba_is_composited_on_white():
    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[0, 0] = (255, 0, 0, 255)  # opaque red
    rgba[0, 1] = (0, 0, 0, 0)  # fully transparent black -> white
    rgba[0, 2] = (0, 0, 0, 128)  # half-transparent black -> mid grey
    px = decode_image(encode(Image.fromarray(rgba, "RGBA"), "PNG"), "a.png").pixels
    assert px[0, 0].tolist() == [255, 0, 0]
    assert px[0, 1].tolist() == [255, 255, 255]
    assert np.abs(px[0, 2].astype(int) - 127).max() <= 1


def test_la_is_composited_on_white():
    la = Image.merge("LA", [solid(50, (3, 2), "L"), Image.fromarray(np.array([[0, 255, 0], [255, 0, 255]], np.uint8))])
    px = decode_image(encode(la, "PNG"), "la.png").pixels
    assert px[0, 0].tolist() == [255, 255, 255] and px[0, 1].tolist() == [50, 50, 50]


def test_palette_with_transparency_is_composited_on_white():
    p = Image.new("P", (4, 4), 1)
    p.putpalette([0, 0, 255] + [255, 0, 0] + [0] * 762)
    p.putpixel((0, 0), 0)
    data = encode(p, "PNG", transparency=1)  # index 1 (red) is transparent
    px = decode_image(data, "p.png").pixels
    assert px[0, 0].tolist() == [0, 0, 255]
    assert px[1, 1].tolist() == [255, 255, 255]


def test_gif_transparency_is_composited_on_white():
    p = Image.new("P", (4, 4), 1)
    p.putpalette([0, 255, 0] + [9, 9, 9] + [0] * 762)
    p.putpixel((3, 3), 0)
    px = decode_image(encode(p, "GIF", transparency=1), "t.gif").pixels
    assert px[0, 0].tolist() == [255, 255, 255] and px[3, 3].tolist() == [0, 255, 0]


def test_cmyk_is_converted_to_rgb():
    cmyk = Image.new("CMYK", (4, 2), (0, 255, 255, 0))  # no cyan, full magenta+yellow: red
    cmyk.putpixel((0, 0), (0, 0, 0, 0))  # no ink: white
    px = decode_image(encode(cmyk, "TIFF"), "print.tif").pixels
    assert px[1, 1].tolist() == [255, 0, 0] and px[0, 0].tolist() == [255, 255, 255]


def test_cmyk_jpeg_is_converted_to_rgb():
    px = decode_image(encode(Image.new("CMYK", (16, 16), (0, 255, 255, 0)), "JPEG", quality=95), "c.jpg").pixels
    assert np.abs(px[8, 8].astype(int) - [255, 0, 0]).max() <= 8


def test_grayscale_l_becomes_three_equal_channels():
    px = decode_image(encode(solid(100, (5, 3), "L"), "PNG"), "g.png").pixels
    assert px.shape == (3, 5, 3) and (px == 100).all()


def test_one_bit_image_becomes_black_and_white_rgb():
    im = Image.new("1", (8, 8), 0)
    im.putpixel((1, 1), 1)
    px = decode_image(encode(im, "PNG"), "bw.png").pixels
    assert px[1, 1].tolist() == [255, 255, 255] and px[0, 0].tolist() == [0, 0, 0]


def test_16_bit_mid_grey_stays_mid_grey_not_white():
    arr = np.array([[0, 32768, 65535, 257 * 10]], np.uint16)
    data = encode(Image.fromarray(arr), "PNG")
    assert Image.open(io.BytesIO(data)).mode.startswith("I;16")
    px = decode_image(data, "deep.png").pixels
    assert px[0, :, 0].tolist() == [0, 128, 255, 10]
    assert (px[..., 0] == px[..., 2]).all()


def test_32_bit_integer_tiff_within_16_bit_range_is_scaled_by_bit_depth():
    data = encode(Image.fromarray(np.array([[0, 32768, 65535]], np.int32), "I"), "TIFF")
    assert decode_image(data, "i.tif").pixels[0, :, 1].tolist() == [0, 128, 255]


def test_32_bit_integer_tiff_outside_16_bit_range_is_min_max_scaled():
    data = encode(Image.fromarray(np.array([[-1000, 0, 1000]], np.int32), "I"), "TIFF")
    assert decode_image(data, "i.tif").pixels[0, :, 0].tolist() == [0, 128, 255]


def test_float_tiff_in_unit_range_is_scaled_by_255():
    arr = np.array([[0.0, 0.5, 1.0]], np.float32)
    data = encode(Image.fromarray(arr, "F"), "TIFF")
    assert Image.open(io.BytesIO(data)).mode == "F"
    assert decode_image(data, "f.tif").pixels[0, :, 0].tolist() == [0, 128, 255]


def test_float_tiff_outside_unit_range_is_min_max_scaled_and_nan_is_black():
    arr = np.array([[-5.0, 0.0, 5.0, np.nan]], np.float32)
    px = decode_image(encode(Image.fromarray(arr, "F"), "TIFF"), "f.tif").pixels
    assert px[0, :3, 0].tolist() == [0, 128, 255]
    assert px[0, 3].tolist() == [0, 0, 0]


# --------------------------------------------------------------------------------------------
# several frames: the first one, with a note


def _three_frames():
    return [solid(c, (16, 16)) for c in ((255, 0, 0), (0, 255, 0), (0, 0, 255))]


def test_animated_gif_uses_first_frame_with_note():
    frames = _three_frames()
    img = decode_image(encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=50), "a.gif")
    assert img.pixels[0, 0].tolist() == [255, 0, 0]
    assert img.notes == ("animated GIF: used the first of 3 frames",)


def test_animated_webp_uses_first_frame_with_note():
    frames = _three_frames()
    data = encode(frames[0], "WEBP", save_all=True, append_images=frames[1:], lossless=True, duration=50)
    img = decode_image(data, "a.webp")
    assert img.pixels[0, 0].tolist() == [255, 0, 0]
    assert img.notes == ("animated WebP: used the first of 3 frames",)


def test_multipage_tiff_uses_first_page_with_note():
    frames = _three_frames()
    img = decode_image(encode(frames[0], "TIFF", save_all=True, append_images=frames[1:]), "scan.tif")
    assert img.pixels[0, 0].tolist() == [255, 0, 0]
    assert img.notes == ("multi-page TIFF: used the first of 3 pages",)


def test_mpo_uses_first_image_with_note():
    frames = _three_frames()
    img = decode_image(encode(frames[0], "MPO", save_all=True, append_images=frames[1:2], quality=95), "3d.mpo")
    assert np.abs(img.pixels[8, 8].astype(int) - [255, 0, 0]).max() <= 8
    assert img.notes == ("MPO (multi-picture JPEG): used the first of 2 images",)


def test_single_frame_gif_has_no_note():
    assert decode_image(encode(solid((1, 2, 3), (32, 32)), "GIF"), "s.gif").notes == ()


# --------------------------------------------------------------------------------------------
# EXIF orientation


def _marked(width=64, height=32, marker=16) -> Image.Image:
    """Blue, with a red square marker in the stored top-left corner."""
    arr = np.zeros((height, width, 3), np.uint8)
    arr[...] = (0, 0, 255)
    arr[:marker, :marker] = (255, 0, 0)
    return Image.fromarray(arr)


def _with_orientation(im: Image.Image, orientation: int, fmt="JPEG") -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return encode(im, fmt, exif=exif, **({"quality": 95} if fmt == "JPEG" else {}))


def _red_corner(px: np.ndarray) -> str:
    corners = {"top-left": px[:6, :6], "top-right": px[:6, -6:], "bottom-left": px[-6:, :6],
               "bottom-right": px[-6:, -6:]}
    red = [k for k, v in corners.items() if v[..., 0].mean() > 200 and v[..., 2].mean() < 60]
    assert len(red) == 1, red
    return red[0]


def test_no_orientation_keeps_marker_top_left():
    px = decode_image(encode(_marked(), "JPEG", quality=95), "o1.jpg").pixels
    assert px.shape == (32, 64, 3) and _red_corner(px) == "top-left"


def test_exif_orientation_3_is_rotated_180():
    px = decode_image(_with_orientation(_marked(), 3), "o3.jpg").pixels
    assert px.shape == (32, 64, 3) and _red_corner(px) == "bottom-right"


def test_exif_orientation_6_is_rotated_90_clockwise():
    px = decode_image(_with_orientation(_marked(), 6), "o6.jpg").pixels
    assert px.shape == (64, 32, 3) and _red_corner(px) == "top-right"


def test_exif_orientation_8_is_rotated_90_counter_clockwise():
    px = decode_image(_with_orientation(_marked(), 8), "o8.jpg").pixels
    assert px.shape == (64, 32, 3) and _red_corner(px) == "bottom-left"


def test_exif_orientation_in_png_is_applied_exactly():
    px = decode_image(_with_orientation(_marked(), 6, "PNG"), "o6.png").pixels
    np.testing.assert_array_equal(px, np.asarray(_marked().transpose(Image.Transpose.ROTATE_270)))


def test_orientation_applied_before_resize():
    data = _with_orientation(_marked(), 6)
    px = load_image(data, "o6.jpg", (32, 16), "stretch").pixels
    assert px.shape == (32, 16, 3) and _red_corner(px) == "top-right"


# --------------------------------------------------------------------------------------------
# JPEG draft mode


def test_load_image_uses_jpeg_draft_for_large_jpegs(monkeypatch):
    data = encode(Image.fromarray(noise(600, 800)), "JPEG", quality=85)
    calls = []
    real = JpegImagePlugin.JpegImageFile.draft

    def spy(self, mode, size):
        calls.append((mode, size))
        return real(self, mode, size)

    monkeypatch.setattr(JpegImagePlugin.JpegImageFile, "draft", spy)
    out = load_image(data, "big.jpg", (64, 64), "stretch").pixels
    assert calls == [("RGB", (64, 64))]
    assert out.shape == (64, 64, 3)
    reference = resize_image(decode_image(data, "big.jpg").pixels, (64, 64), "stretch").astype(int)
    assert np.abs(out.astype(int) - reference).mean() < 12  # a reduced-scale decode of the same picture


def test_draft_never_goes_below_the_target_and_respects_exif_axis_swap():
    # Stored 160 wide × 320 tall, orientation 6: upright it is 320 wide × 160 tall. The right draft is
    # 1/4 (upright 80 × 40); one that ignored the swap would pick 1/8 and leave the height at 20 < 40.
    data = _with_orientation(_marked(160, 320, marker=64), 6)
    img = decode_image(data, "o6.jpg", draft_size=(40, 10))
    h, w = img.pixels.shape[:2]
    assert h >= 40 and w >= 10
    assert (h, w) == (40, 80)  # reduced 1/4: the target's height bounds the DCT scale
    assert _red_corner(img.pixels) == "top-right"


def test_draft_size_is_ignored_for_non_jpeg(png_bytes):
    assert decode_image(png_bytes, "p.png", draft_size=(8, 8)).pixels.shape == (48, 64, 3)


# --------------------------------------------------------------------------------------------
# resizing


def _bands(h=40, w=120) -> np.ndarray:
    """Red | green | blue vertical thirds, so crops and pads are easy to locate."""
    arr = np.zeros((h, w, 3), np.uint8)
    arr[:, : w // 3] = (255, 0, 0)
    arr[:, w // 3 : 2 * w // 3] = (0, 255, 0)
    arr[:, 2 * w // 3 :] = (0, 0, 255)
    return arr


def test_stretch_gives_exact_shape_ignoring_aspect():
    out = resize_image(_bands(), (30, 20), "stretch")
    assert out.shape == (30, 20, 3) and out.dtype == np.uint8
    assert out[:, 0].tolist() == [[255, 0, 0]] * 30  # all three bands survive, squeezed
    assert out[:, -1].tolist() == [[0, 0, 255]] * 30


def test_stretch_matches_pillow_bilinear():
    arr = noise(50, 70)
    expected = np.asarray(Image.fromarray(arr).resize((33, 21), Image.Resampling.BILINEAR))
    np.testing.assert_array_equal(resize_image(arr, (21, 33), "stretch"), expected)


def test_center_crop_keeps_the_middle():
    out = resize_image(_bands(40, 120), (20, 20), "center-crop")
    assert out.shape == (20, 20, 3)
    # The middle third only; like resize-then-crop, the filter may blend the outermost columns.
    assert (out[:, 2:-2] == [0, 255, 0]).all()
    assert out[..., 1].min() > 150 and out[..., 0].max() < 110 and out[..., 2].max() < 110


def test_center_crop_of_tall_image_keeps_the_middle_rows():
    arr = np.ascontiguousarray(_bands(40, 120).transpose(1, 0, 2))  # 120 tall, 40 wide, bands top to bottom
    out = resize_image(arr, (10, 10), "center-crop")
    assert out.shape == (10, 10, 3)
    assert (out[2:-2] == [0, 255, 0]).all() and out[..., 1].min() > 150


def test_center_crop_matches_resize_then_crop():
    arr = noise(60, 100)
    # Short side 60 -> 30: the whole image becomes 30×50 and its centre 30×30 is kept. Resizing only
    # the centred source box (one resample, no intermediate image) gives exactly the same pixels.
    full = np.asarray(Image.fromarray(arr).resize((50, 30), Image.Resampling.BILINEAR))
    np.testing.assert_array_equal(resize_image(arr, (30, 30), "center-crop"), full[:, 10:40])


def test_pad_letterboxes_a_wide_image_top_and_bottom_with_black():
    arr = np.full((40, 120, 3), 255, np.uint8)
    out = resize_image(arr, (60, 60), "pad")
    assert out.shape == (60, 60, 3)
    assert (out[:20] == 0).all() and (out[40:] == 0).all()  # 60×20 content, centred
    assert (out[20:40] == 255).all()


def test_pad_pillarboxes_a_tall_image_left_and_right():
    arr = np.full((120, 40, 3), 255, np.uint8)
    out = resize_image(arr, (60, 60), "pad")
    assert (out[:, :20] == 0).all() and (out[:, 40:] == 0).all() and (out[:, 20:40] == 255).all()


def test_pad_of_matching_aspect_has_no_border():
    out = resize_image(np.full((30, 60, 3), 255, np.uint8), (20, 40), "pad")
    assert (out == 255).all()


def test_native_returns_the_pixels_unchanged():
    arr = noise()
    assert resize_image(arr, (10, 10), "native") is arr
    assert load_image(encode(Image.fromarray(arr), "PNG"), "n.png", (10, 10), "native").pixels.shape == (48, 64, 3)
    assert load_image(encode(Image.fromarray(arr), "PNG"), "n.png", None).pixels.shape == (48, 64, 3)


@pytest.mark.parametrize("policy", RESIZE_POLICIES)
def test_resize_never_mutates_its_input(policy):
    arr = noise(37, 53)
    before = arr.copy()
    out = resize_image(arr, (16, 24), policy)
    np.testing.assert_array_equal(arr, before)
    assert arr.flags.writeable
    if policy != "native":
        assert not np.shares_memory(out, arr)


@pytest.mark.parametrize("policy", ["stretch", "center-crop", "pad"])
def test_load_image_equals_decode_then_resize(policy):
    data = encode(Image.fromarray(noise(37, 53)), "PNG")
    direct = load_image(data, "n.png", (24, 16), policy)
    two_steps = resize_image(decode_image(data, "n.png").pixels, (24, 16), policy)
    np.testing.assert_array_equal(direct.pixels, two_steps)
    assert direct.pixels.shape == (24, 16, 3) and direct.name == "n.png"


def test_load_image_does_not_mutate_a_bytearray_input():
    data = bytearray(encode(Image.fromarray(noise()), "PNG"))
    before = bytes(data)
    load_image(data, "b.png", (8, 8))
    assert bytes(data) == before


def test_unknown_policy_is_refused_with_the_choices():
    with pytest.raises(InvalidResizeError, match="stretch, center-crop, pad, native"):
        resize_image(noise(), (8, 8), "squash")
    with pytest.raises(InvalidResizeError):
        load_image(encode(Image.fromarray(noise()), "PNG"), "x.png", (8, 8), "squash")


@pytest.mark.parametrize("size", [(0, 8), (8, -1), (8.5, 8), ("8", 8), (8,), None])
def test_bad_target_size_is_refused(size):
    with pytest.raises(InvalidResizeError):
        resize_image(noise(), size, "stretch")


def test_resize_refuses_arrays_that_are_not_rgb_uint8():
    with pytest.raises(InvalidResizeError, match="uint8"):
        resize_image(np.zeros((8, 8), np.uint8), (4, 4))
    with pytest.raises(InvalidResizeError):
        resize_image(np.zeros((8, 8, 3), np.float32), (4, 4))


# --------------------------------------------------------------------------------------------
# names and hashes


def test_sanitize_drops_folders_and_dot_dot():
    assert sanitize_name("../../etc/passwd.png") == "passwd.png"
    assert sanitize_name("C:\\Users\\me\\Pictures\\cat.png") == "cat.png"
    assert sanitize_name("/abs/path/dog.jpg") == "dog.jpg"
    assert sanitize_name("photos/..") == "photos"
    assert sanitize_name("..") == "unnamed" and sanitize_name("") == "unnamed" and sanitize_name("///") == "unnamed"


def test_sanitize_removes_control_and_bidi_characters():
    assert sanitize_name("ca\x00t\x07.png") == "cat.png"
    assert sanitize_name("evil\u202egnp.exe") == "evilgnp.exe"  # no right-to-left disguise
    assert sanitize_name("line\nbreak\t.png") == "line break .png"
    assert sanitize_name("\x1b[31mred\x1b[0m.png") == "[31mred[0m.png"  # ESC gone: no terminal colours


def test_sanitize_shortens_long_names_in_the_middle_keeping_the_extension():
    name = "a" * 250 + "b" * 250 + ".png"
    out = sanitize_name(name)
    assert len(out) == 80 and "…" in out
    assert out.startswith("a" * 40) and out.endswith("b" * 35 + ".png")
    assert len(sanitize_name(name, max_len=20)) == 20
    assert sanitize_name("short.png", max_len=20) == "short.png"


def test_sanitize_accepts_bytes_and_normalises_unicode():
    assert sanitize_name(b"caf\xc3\xa9.png") == "café.png"
    assert sanitize_name("cafe\u0301.png") == "café.png"


def test_messages_use_the_sanitised_name_never_the_path():
    with pytest.raises(EmptyImageError) as info:
        decode_image(b"", "../../srv/secret/uploads/ca\nt.png")
    message = str(info.value)
    assert message.startswith("ca t.png: ")
    assert "secret" not in message and ".." not in message and "\n" not in message


def test_content_hash_is_sha256_hex(png_bytes):
    assert content_hash(png_bytes) == hashlib.sha256(png_bytes).hexdigest()
    assert content_hash(b"a") != content_hash(b"b")


# --------------------------------------------------------------------------------------------
# threads and globals


def test_decoding_in_threads_matches_sequential_and_leaves_globals_alone(png_400mp):
    datas = [encode(Image.fromarray(noise(40, 50, seed=i)), "PNG") for i in range(12)]
    expected = [load_image(d, f"{i}.png", (16, 16)).pixels for i, d in enumerate(datas)]
    limit_before, filters_before = Image.MAX_IMAGE_PIXELS, list(warnings.filters)

    def work(i):
        if i % 4 == 0:  # interleave refusals with successes
            with pytest.raises(ImageTooLargeError):
                decode_image(png_400mp, "big.png")
        return load_image(datas[i], f"{i}.png", (16, 16)).pixels

    with ThreadPoolExecutor(4) as pool:
        got = list(pool.map(work, range(12)))
    for a, b in zip(got, expected, strict=False):
        np.testing.assert_array_equal(a, b)
    assert Image.MAX_IMAGE_PIXELS == limit_before
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False
    # Only a left-over "error" filter for the bomb warning would be tolerable; nothing laxer.
    extra = [f for f in warnings.filters if f not in filters_before]
    assert all(f[0] == "error" and f[2] is Image.DecompressionBombWarning for f in extra)


@pytest.mark.parametrize("policy", ["stretch", "center-crop", "pad"])
def test_a_large_shrink_reduces_by_a_whole_factor_first(policy):
    # 600×900 to 40×60 is a 15× shrink: Pillow's reducing_gap=3 box-reduces by 5 first, then
    # resamples 3× bilinearly. The result is that two-step resize, and close to the full resample.
    yy, xx = np.mgrid[0:600, 0:900]
    photo = np.stack([np.sin(xx / (30 + 9 * c)) * 80 + np.cos(yy / 45) * 60 + 110 for c in range(3)], axis=-1)
    arr = np.clip(photo + np.random.default_rng(0).normal(0, 12, photo.shape), 0, 255).astype(np.uint8)
    im = Image.fromarray(arr)  # photo-like: smooth gradients and sensor-like noise
    out = resize_image(arr, (40, 60), policy)
    box = None if policy != "center-crop" else (0.0, 0.0, 900.0, 600.0)  # same aspect: the whole image
    stepped = np.asarray(im.resize((60, 40), Image.Resampling.BILINEAR, box=box, reducing_gap=3.0))
    fair = np.asarray(im.resize((60, 40), Image.Resampling.BILINEAR, box=box))
    np.testing.assert_array_equal(out, stepped)
    assert not np.array_equal(stepped, fair)  # the two-step path really ran
    diff = np.abs(out.astype(int) - fair.astype(int))
    assert diff.max() <= 2 and diff.mean() < 0.3
