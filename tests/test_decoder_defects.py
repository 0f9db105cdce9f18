"""Issue 10, item 2: real files the decoder got wrong. Every file is built here, byte by byte where Pillow
cannot write it (12-bit TIFF, a BMP with a V4 header and an alpha mask)."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from extractor.images import CorruptImageError, decode_image, load_image


def encode(im: Image.Image, fmt: str, **kwargs) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **kwargs)
    return buf.getvalue()


def _chunk(tag: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)


def _noise(h=64, w=64, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).integers(1, 256, (h, w, 3), dtype=np.uint8)  # no pure-black pixel


def _png(arr: np.ndarray, idat: bytes | None = None, extra: bytes = b"") -> bytes:
    h, w = arr.shape[:2]
    raw = b"".join(b"\x00" + arr[r].tobytes() for r in range(h))
    head = b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)) + extra
    return head + _chunk(b"IDAT", zlib.compress(raw) if idat is None else idat) + _chunk(b"IEND", b"")


# --------------------------------------------------------------------------------------------
# TIFF orientation: Pillow turns TIFFs upright itself


def _marked(width=64, height=32, marker=16) -> Image.Image:
    arr = np.zeros((height, width, 3), np.uint8)
    arr[...] = (0, 0, 255)
    arr[:marker, :marker] = (255, 0, 0)
    return Image.fromarray(arr)


@pytest.mark.parametrize("orientation", [3, 6, 8])
def test_tiff_with_exif_orientation_is_turned_once_like_a_jpeg(orientation):
    exif = Image.Exif()
    exif[0x0112] = orientation
    tiff = decode_image(encode(_marked(), "TIFF", exif=exif), "o.tif").pixels
    png = decode_image(encode(_marked(), "PNG", exif=exif), "o.png").pixels  # PNG: applied by us, exactly
    np.testing.assert_array_equal(tiff, png)
    assert tiff.shape[:2] == ((32, 64) if orientation == 3 else (64, 32))


def test_tiff_orientation_applied_once_through_load_image_too():
    exif = Image.Exif()
    exif[0x0112] = 6
    px = load_image(encode(_marked(), "TIFF", exif=exif), "o6.tif", (64, 32), "stretch").pixels
    np.testing.assert_array_equal(px, np.asarray(_marked().transpose(Image.Transpose.ROTATE_270)))


# --------------------------------------------------------------------------------------------
# damaged PNGs: reading EXIF decoded them and a broad except hid the failure


def test_png_with_a_corrupt_data_stream_is_refused_not_black():
    arr = _noise()
    raw = b"".join(b"\x00" + arr[r].tobytes() for r in range(arr.shape[0]))
    z = bytearray(zlib.compress(raw))
    z[10] ^= 0xFF  # one flipped byte inside the deflate stream; the chunk CRC is recomputed, so only zlib sees it
    with pytest.raises(CorruptImageError, match="damaged or incomplete"):
        decode_image(_png(arr, bytes(z)), "corrupt.png")


def test_png_whose_end_was_cut_off_and_zero_filled_is_refused():
    # An interrupted download often leaves the file at full length with zeros where the data never came.
    data = _png(_noise())
    cut = int(len(data) * 0.8)
    with pytest.raises(CorruptImageError, match="damaged or incomplete"):
        decode_image(data[:cut] + b"\x00" * (len(data) - cut), "cut.png")


@pytest.mark.filterwarnings("ignore:Corrupt EXIF data")
def test_png_with_a_broken_exif_block_still_decodes():
    # The orientation read must still forgive a broken EXIF block: the pixels are fine.
    arr = _noise(16, 16)
    px = decode_image(_png(arr, extra=_chunk(b"eXIf", b"MM\x00*garbage")), "exif.png").pixels
    np.testing.assert_array_equal(px, arr)


# --------------------------------------------------------------------------------------------
# 12-bit data in a 16-bit container: scale by the declared depth


def _tiff_12bit(values: np.ndarray) -> bytes:
    """A little-endian, uncompressed, one-strip grayscale TIFF with BitsPerSample = 12 (packed, MSB first)."""
    h, w = values.shape
    assert w % 2 == 0
    v = values.astype(np.uint16).reshape(h, w // 2, 2)
    a, b = v[..., 0], v[..., 1]
    packed = np.stack([a >> 4, ((a & 0xF) << 4) | (b >> 8), b & 0xFF], axis=-1).astype(np.uint8).tobytes()
    tags = [(256, 3, w), (257, 3, h), (258, 3, 12), (259, 3, 1), (262, 3, 1), (273, 4, 0), (277, 3, 1),
            (278, 3, h), (279, 4, len(packed))]
    ifd_offset = 8
    data_offset = ifd_offset + 2 + 12 * len(tags) + 4
    entries = b"".join(struct.pack("<HHII", tag, typ, 1, data_offset if tag == 273 else val) if typ == 4
                       else struct.pack("<HHIHH", tag, typ, 1, val, 0) for tag, typ, val in tags)
    return b"II*\x00" + struct.pack("<I", ifd_offset) + struct.pack("<H", len(tags)) + entries + b"\x00" * 4 + packed


def test_12_bit_tiff_is_scaled_by_its_declared_depth_not_by_257():
    values = np.array([[0, 2048, 4095, 1024]] * 4, np.uint16)
    data = _tiff_12bit(values)
    im = Image.open(io.BytesIO(data))
    assert im.mode == "I;16" and np.asarray(im).max() == 4095  # how Pillow hands 12-bit data over
    px = decode_image(data, "12bit.tif").pixels
    np.testing.assert_array_equal(px[0, :, 0], [0, 128, 255, 64])


def _png_16bit_gray(values: np.ndarray, sbit: int | None) -> bytes:
    h, w = values.shape
    raw = b"".join(b"\x00" + values[r].astype(">u2").tobytes() for r in range(h))
    extra = _chunk(b"sBIT", bytes([sbit])) if sbit is not None else b""
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, 0, 0, 0, 0)) + extra
            + _chunk(b"IDAT", zlib.compress(raw)) + _chunk(b"IEND", b""))


def test_16_bit_png_declaring_12_significant_bits_is_scaled_by_4095():
    values = np.array([[0, 2048, 4095, 1024]] * 4, np.uint16)
    px = decode_image(_png_16bit_gray(values, 12), "12bit.png").pixels
    np.testing.assert_array_equal(px[0, :, 0], [0, 128, 255, 64])


def test_16_bit_png_with_sbit_whose_samples_are_already_scaled_up_keeps_the_257_rule():
    # The PNG spec says samples are scaled to the full 16 bits and sBIT only records the original depth;
    # a file that did so must not be scaled a second time (values above 4095 prove it).
    values = np.array([[0, 2048 * 16, 65535, 1024 * 16]] * 4, np.uint16)
    px = decode_image(_png_16bit_gray(values, 12), "scaled.png").pixels
    np.testing.assert_array_equal(px[0, :, 0], np.round(values[0] / 257).astype(np.uint8))


def test_16_bit_png_without_sbit_still_divides_by_257():
    values = np.array([[0, 2048, 4095, 32896]] * 4, np.uint16)
    px = decode_image(_png_16bit_gray(values, None), "plain16.png").pixels
    np.testing.assert_array_equal(px[0, :, 0], [0, 8, 16, 128])


# --------------------------------------------------------------------------------------------
# 32-bit BMP with an all-zero alpha channel


def _bmp_v4_bgra(arr: np.ndarray, alpha: np.ndarray) -> bytes:
    """A 32-bit BMP with a BITMAPV4HEADER and BI_BITFIELDS masks B, G, R, A (how many editors write RGBA)."""
    h, w = arr.shape[:2]
    bgra = np.dstack([arr[..., 2], arr[..., 1], arr[..., 0], alpha]).astype(np.uint8)[::-1]  # bottom-up rows
    pixels = bgra.tobytes()
    header = struct.pack("<IiiHHIIiiII", 108, w, h, 1, 32, 3, len(pixels), 2835, 2835, 0, 0)
    header += struct.pack("<IIII", 0x00FF0000, 0x0000FF00, 0x000000FF, 0xFF000000) + b"\x00" * (108 - 56)
    offset = 14 + len(header)
    return b"BM" + struct.pack("<IHHI", offset + len(pixels), 0, 0, offset) + header + pixels


def test_32_bit_bmp_with_all_zero_alpha_is_shown_opaque_like_browsers_do():
    arr = _noise(8, 8)
    data = _bmp_v4_bgra(arr, np.zeros((8, 8), np.uint8))
    assert Image.open(io.BytesIO(data)).mode == "RGBA"  # Pillow reads the alpha mask
    np.testing.assert_array_equal(decode_image(data, "zero-alpha.bmp").pixels, arr)


def test_32_bit_bmp_with_real_alpha_is_still_composited_on_white():
    arr = _noise(8, 8)
    alpha = np.full((8, 8), 255, np.uint8)
    alpha[:4] = 0
    px = decode_image(_bmp_v4_bgra(arr, alpha), "alpha.bmp").pixels
    assert (px[:4] == 255).all()
    np.testing.assert_array_equal(px[4:], arr[4:])
