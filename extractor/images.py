"""Bytes in, an upright RGB ``uint8`` array out; every refusal is a named ValueError subclass.

This is the one place uploaded bytes meet an image parser, so it is deliberately narrow:

* **Allow-list from the bytes, not the name.** Pillow is only ever asked to try the parsers in
  :data:`ALLOWED_FORMATS` (``Image.open(..., formats=...)``), so its riskier plugins (PSD, EPS,
  PDF, ...) are never reached. A PNG named ``.jpg`` decodes; text named ``.png`` is refused.
* **Size before pixels.** The declared size is read from the header and checked against
  ``max_pixels`` and :data:`MAX_ASPECT_RATIO` before a single pixel is decoded. Pillow's own
  ``DecompressionBombWarning`` is turned into an error locally (``Image.MAX_IMAGE_PIXELS`` is never
  changed), so the effective cap is ``min(max_pixels, Image.MAX_IMAGE_PIXELS)``.
* **Decode fully, inside the try.** Pillow opens lazily and only fails on broken data at
  ``load()``, so loading is forced while errors are still being translated.
* **One canonical output.** EXIF orientation applied, first frame only, every mode mapped to RGB:

  ==========================  ==============================================================
  mode                        becomes
  ==========================  ==============================================================
  RGBA, LA, PA, RGBa, P/L/RGB composited over **white** (a fully transparent pixel is 255, 255, 255)
  with ``transparency``
  CMYK, YCbCr, HSV, LAB, P,   Pillow's ``convert("RGB")``
  L, 1, RGBX
  I;16, I;16B, I;16L, ...     by bit depth: ``round(v / 257)``, so 65535 -> 255 and mid-grey stays mid-grey;
                              a declared smaller depth (TIFF BitsPerSample 12, PNG sBIT 12) is the full scale
                              (``round(v * 255 / 4095)``) unless a value exceeds it
  32-bit BMP, alpha all 0     opaque RGB, as browsers show it (the writer meant "no alpha")
  I (32-bit int)              if every value is in 0..65535 (how 16-bit PNG/TIFF data arrives), as I;16;
                              otherwise min-max scaled over the image
  F (32-bit float)            if every finite value is in [0, 1], ``v * 255``; otherwise min-max scaled over
                              the finite values; NaN -> black (0), +/-inf clipped to 255 / 0
  ==========================  ==============================================================

Size rules (see :func:`decode_image`): images over ``max_pixels`` (default 40 MP) and strips longer
than :data:`MAX_ASPECT_RATIO` (50:1, so 1×60000 is refused) raise :class:`ImageTooLargeError`.
Tiny images, down to 1×1, are **accepted**: resizing upscales them, and a note says they carry
little detail. :class:`ImageTooSmallError` is kept for a header declaring a zero side (Pillow
itself already refuses those at open, so in practice they arrive as :class:`CorruptImageError`).

Returned arrays are **read-only** (they are shared values, often cached); ``.copy()`` to edit.

Example:
    >>> img = load_image(open("cat.jpg", "rb").read(), "cat.jpg", (224, 224), "center-crop")
    >>> img.pixels.shape, img.pixels.dtype
    ((224, 224, 3), dtype('uint8'))
"""

from __future__ import annotations

import functools
import hashlib
import io
import re
import unicodedata
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image

from .errors import LayerExplorerError

__all__ = [
    "ALLOWED_FORMATS",
    "ALLOWED_EXTENSIONS",
    "DEFAULT_MAX_PIXELS",
    "MAX_ASPECT_RATIO",
    "RESIZE_POLICIES",
    "InvalidImageError",
    "EmptyImageError",
    "UnsupportedFormatError",
    "CorruptImageError",
    "ImageTooLargeError",
    "ImageTooSmallError",
    "InvalidResizeError",
    "DecodedImage",
    "decode_image",
    "resize_image",
    "load_image",
    "sanitize_name",
    "content_hash",
]

ALLOWED_FORMATS = frozenset({"PNG", "JPEG", "WEBP", "BMP", "GIF", "TIFF", "MPO"})  # Pillow format names
ALLOWED_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff")
DEFAULT_MAX_PIXELS = 40_000_000  # Pillow's own warning zone starts at ~89 MP; we refuse well before
MAX_ASPECT_RATIO = 50.0  # long side / short side; a 1×60000 strip is no picture a CNN can use
RESIZE_POLICIES = ("stretch", "center-crop", "pad", "native")

_PAD_VALUE = 0  # letterbox colour for "pad": black, the value zero-padding convolutions also see
_SMALL_SIDE = 16  # below this a note says the image is mostly upscaling
# A shrink by 3× or more first divides the size by a whole factor with a box filter (Pillow's
# `reducing_gap`) and resamples only the rest bilinearly: 1.6–2.8× faster on a large PNG, within two
# grey levels of the full resample, mean 0.2 (at 3.0 "indistinguishable from fair resampling in most
# cases", says Pillow). JPEGs seldom get there: draft decoding has already shrunk them under 2× the target.
_REDUCING_GAP = 3.0
_FORMAT_HINT = "Use PNG, JPEG, WebP, BMP, GIF or TIFF."
_FRIENDLY_FORMAT = {"PNG": "PNG", "JPEG": "JPEG", "WEBP": "WebP", "BMP": "BMP", "GIF": "GIF",
                    "TIFF": "TIFF", "MPO": "MPO"}

# Stored (not upright) image -> upright, per EXIF Orientation (same table as ImageOps.exif_transpose).
_ORIENTATION_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
_ORIENTATION_TAG = 0x0112


class InvalidImageError(LayerExplorerError):
    """The bytes cannot be used as an image; base class of every refusal in this module.

    Raised as ``InvalidImageError(name, reason)``: the message is ``"name: reason"``, and
    ``name`` and ``reason`` stay separate attributes so callers never take the message apart.
    With a single argument it is the whole message (``name`` is then ``None``).

    Example:
        >>> e = CorruptImageError("cat.png", "the file is damaged")
        >>> str(e), e.name, e.reason
        ('cat.png: the file is damaged', 'cat.png', 'the file is damaged')
    """

    def __init__(self, name: str, reason: str | None = None):
        if reason is None:
            super().__init__(name)
            self.name, self.reason = None, name
        else:
            super().__init__(f"{name}: {reason}")
            self.name, self.reason = name, reason


class EmptyImageError(InvalidImageError):
    """The file has no bytes at all (often a failed download or an interrupted copy)."""


class UnsupportedFormatError(InvalidImageError):
    """Not an image, or an image format outside :data:`ALLOWED_FORMATS` (SVG, HEIC, PSD, PDF, ...)."""


class CorruptImageError(InvalidImageError):
    """A supported format whose data is truncated or broken."""


class ImageTooLargeError(InvalidImageError):
    """The declared pixel count or aspect ratio is over the cap; refused before decoding."""


class ImageTooSmallError(InvalidImageError):
    """The header declares a zero width or height. 1×1 and other tiny images are accepted."""


class InvalidResizeError(LayerExplorerError):
    """An unknown resize policy or an unusable target size."""


@dataclass(frozen=True, eq=False)  # identity equality: comparing pixel arrays with == is ambiguous
class DecodedImage:
    """A decoded image: pixels plus what a user should know about how they were obtained.

    Example:
        >>> DecodedImage(np.zeros((2, 3, 3), np.uint8), "a.png").pixels.shape
        (2, 3, 3)
    """

    pixels: np.ndarray  # (H, W, 3) uint8, upright, RGB, read-only
    name: str  # display name, already sanitised
    notes: tuple[str, ...] = ()  # e.g. "animated GIF: used the first of 12 frames"


# --------------------------------------------------------------------------------------------
# names and hashes


_DROP_CATEGORIES = {"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"}  # controls, bidi overrides, surrogates...


def sanitize_name(name: str, max_len: int = 80) -> str:
    """A file name safe to *show*: basename only, no control characters, at most ``max_len`` long.

    Folders, ``.``/``..`` and both kinds of slash are dropped; control and format characters
    (including right-to-left overrides that disguise extensions) are removed; whitespace runs
    become one space; long names keep their start and their extension around a middle ``…``.
    The result is for display only and is never used as a filesystem path. Escaping for a
    particular renderer (HTML, Markdown) is the caller's job.

    Example:
        >>> sanitize_name("../../etc/pass\\x00wd.png")
        'passwd.png'
        >>> len(sanitize_name("x" * 500 + ".png"))
        80
    """
    if isinstance(name, bytes):
        name = name.decode("utf-8", errors="replace")
    name = unicodedata.normalize("NFC", str(name))
    # Spaces first, so "a\tb" stays readable; then drop everything invisible or control.
    name = "".join(" " if ch.isspace() else ch for ch in name)
    name = "".join(ch for ch in name if unicodedata.category(ch) not in _DROP_CATEGORIES)
    parts = [p.strip() for p in re.split(r"[/\\]+", name)]
    parts = [p for p in parts if p and p not in (".", "..")]
    base = re.sub(r" {2,}", " ", parts[-1]) if parts else ""
    base = base.strip() or "unnamed"
    max_len = max(int(max_len), 5)
    if len(base) > max_len:
        keep = max_len - 1  # one character for the ellipsis
        tail = keep // 2
        base = base[: keep - tail] + "…" + base[len(base) - tail:]
    return base


def content_hash(data: bytes) -> str:
    """SHA-256 of the bytes, as hex: the key for de-duplication and caches.

    Example:
        >>> content_hash(b"")[:12]
        'e3b0c44298fc'
    """
    return hashlib.sha256(data).hexdigest()


# --------------------------------------------------------------------------------------------
# recognising what a refused file is, so the message can say it


def _looks_like(data: bytes) -> tuple[str, bool]:
    """(what the bytes look like, whether that is an allowed format) from magic numbers alone."""
    head = data[:32]
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG", True
    if head.startswith(b"\xff\xd8\xff"):
        return "JPEG", True
    if head.startswith((b"GIF87a", b"GIF89a")):
        return "GIF", True
    if head.startswith(b"BM") and len(head) >= 18 and head[14] in (12, 16, 40, 52, 56, 64, 108, 124):
        return "BMP", True  # "BM" plus a known DIB header size, so text starting "BM..." is not a BMP
    if head.startswith((b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")):
        return "TIFF", True
    if head.startswith(b"RIFF") and head[8:12] == b"WEBP":
        return "WebP", True
    if head.startswith(b"8BPS"):
        return "a Photoshop PSD file", False
    if head.startswith(b"%PDF"):
        return "PDF", False
    if head.startswith((b"%!PS", b"\xc5\xd0\xd3\xc6")):
        return "EPS/PostScript", False
    if head[4:8] == b"ftyp":
        brand = head[8:12]
        if brand in (b"avif", b"avis"):
            return "AVIF", False
        if brand in (b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"mif1", b"msf1"):
            return "HEIC/HEIF", False
        return "a video (MP4/MOV)", False
    if head.startswith((b"\xff\x0a", b"\x00\x00\x00\x0cJXL ")):
        return "JPEG XL", False
    if head.startswith(b"\x00\x00\x01\x00"):
        return "an ICO icon", False
    if head.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        return "a ZIP archive", False
    if head.startswith((b"\x1f\x8b", b"7z\xbc\xaf", b"Rar!")):
        return "a compressed archive", False
    if head.startswith(b"RIFF"):
        return "an audio/video RIFF file", False
    sample = data[:2048].lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if b"<svg" in sample or (sample.startswith(b"<?xml") and b"svg" in sample):
        return "SVG", False
    if sample.startswith((b"<!doctype html", b"<html")):
        return "an HTML page", False
    text = ""
    for cut in range(4):  # the 2048-byte window may split a multi-byte character
        try:
            text = data[: 2048 - cut].decode("utf-8")
            break
        except UnicodeDecodeError:
            continue
    if text and all(ch.isprintable() or ch.isspace() for ch in text):
        return "text", False
    return "", False


def _refuse_unidentified(data: bytes, name: str) -> InvalidImageError:
    kind, allowed = _looks_like(data)
    if allowed:
        return CorruptImageError(name, f"this {kind} file is damaged or incomplete and cannot be read; "
                                 "re-export or re-download it.")
    looks = f" (looks like {kind})" if kind else ""
    return UnsupportedFormatError(name, f"this is not an image Layer Explorer can read{looks}. {_FORMAT_HINT}")


@functools.cache
def _open_formats() -> tuple[str, ...]:
    # Only formats this Pillow build registered: asking Image.open for a missing plugin is a KeyError.
    Image.init()
    return tuple(sorted(f for f in ALLOWED_FORMATS if f in Image.OPEN))


def _bomb_message(name: str, exc: Exception, max_pixels: int) -> str:
    found = re.search(r"\((\d+) pixels\)", str(exc))
    size = f"{int(found.group(1)) / 1e6:.0f} MP" if found else "over Pillow's safety limit"
    cap = min(max_pixels, Image.MAX_IMAGE_PIXELS or max_pixels)
    return f"the image is {size}, over the {cap / 1e6:.0f} MP limit; downscale it before uploading."


# --------------------------------------------------------------------------------------------
# decoding


def _frame_note(im: Image.Image) -> str | None:
    """A note when the file holds more than one frame; only the first one is used."""
    if not getattr(im, "is_animated", False):  # cheap: looks for a second frame, counts nothing
        return None
    frames = getattr(im, "n_frames", 2)
    fmt = im.format or ""
    if fmt == "TIFF":
        return f"multi-page TIFF: used the first of {frames} pages"
    if fmt == "MPO":
        return f"MPO (multi-picture JPEG): used the first of {frames} images"
    return f"animated {_FRIENDLY_FORMAT.get(fmt, fmt)}: used the first of {frames} frames"


def _orientation(im: Image.Image) -> int:
    """The EXIF orientation still to apply. Call it on a JPEG (EXIF sits in its header) or after ``load()``:
    PNG's ``getexif()`` otherwise decodes the image itself, and a decode failure would be taken for broken EXIF.
    TIFFs come back upright from ``load()`` with the tag dropped, so they read 1 here and are not turned twice."""
    try:
        value = im.getexif().get(_ORIENTATION_TAG, 1)
    except Exception:  # the pixels are already decoded: only a broken EXIF block gets here; treat as upright
        return 1
    return value if isinstance(value, int) and value in _ORIENTATION_TRANSPOSE else 1


def _declared_bits(im: Image.Image, data: bytes) -> int | None:
    """Bits per sample a 16-bit grey file declares when fewer are used (TIFF BitsPerSample, PNG sBIT)."""
    if im.format == "TIFF":
        bits = im.tag_v2.get(258)  # Pillow reads a 12-bit TIFF into I;16 with values 0..4095
        bits = max(bits) if isinstance(bits, tuple) and bits else bits
        return bits if isinstance(bits, int) and 0 < bits < 16 else None
    if im.format == "PNG":  # Pillow does not parse sBIT; it sits before the first IDAT
        pos = 8
        while pos + 8 <= len(data):
            length, tag = int.from_bytes(data[pos:pos + 4], "big"), data[pos + 4:pos + 8]
            if tag == b"IDAT":
                break
            if tag == b"sBIT" and length >= 1 and pos + 8 + length <= len(data):
                bits = max(data[pos + 8:pos + 8 + length])
                return bits if 0 < bits < 16 else None
            pos += 12 + length
    return None


def _high_bit_to_u8(im: Image.Image, bits: int | None = None) -> Image.Image:
    """I;16*, I and F images to 8-bit L, by bit depth or range (see the module docstring).

    ``bits`` is a declared depth below 16: used as the full scale when no value exceeds it (a 12-bit camera
    file in a 16-bit container); values above it mean the writer already scaled up, as PNG asks."""
    arr = np.asarray(im)
    lo, hi = (int(arr.min()), int(arr.max())) if arr.size and im.mode != "F" else (0, 0)
    full = (1 << bits) - 1 if bits and hi <= (1 << bits) - 1 else 65535
    if im.mode.startswith("I;16"):
        out = (arr.astype(np.uint32) * 255 + full // 2) // full
    elif im.mode == "I":
        if lo >= 0 and hi <= 65535:
            out = (arr.astype(np.int64) * 255 + full // 2) // full
        else:
            out = np.rint((arr.astype(np.float64) - lo) * (255.0 / max(hi - lo, 1)))
    else:  # "F"
        arr = arr.astype(np.float64)
        nan = np.isnan(arr)
        vals = arr[np.isfinite(arr)]
        lo, hi = (float(vals.min()), float(vals.max())) if vals.size else (0.0, 0.0)
        arr[nan] = lo
        if lo >= 0.0 and hi <= 1.0:
            out = np.rint(np.clip(arr, 0.0, 1.0) * 255.0)
        elif hi > lo:
            out = np.rint(np.clip((arr - lo) * (255.0 / (hi - lo)), 0.0, 255.0))
        else:  # one constant value outside [0, 1]: show it as-is, clipped to the 8-bit range
            out = np.clip(np.rint(arr), 0.0, 255.0)
        out[nan] = 0  # missing data is black, whatever the range
    return Image.fromarray(np.ascontiguousarray(out, dtype=np.uint8), "L")


_ALPHA_MODES = {"RGBA", "LA", "PA", "RGBa"}


def _to_rgb(im: Image.Image, name: str, bits: int | None = None) -> Image.Image:
    """Any loaded Pillow image -> mode RGB, transparency composited over white."""
    if im.mode == "RGB" and "transparency" not in im.info:
        return im
    if im.mode.startswith("I;16") or im.mode in ("I", "F"):
        return _high_bit_to_u8(im, bits).convert("RGB")
    try:
        if im.mode in _ALPHA_MODES or "transparency" in im.info:
            rgba = im.convert("RGBA")
            # Over white, not black: transparent backgrounds of icons and cut-outs are meant to be
            # "paper", and black would invent a dark object edge the network then responds to.
            out = Image.new("RGB", rgba.size, (255, 255, 255))
            out.paste(rgba, mask=rgba.getchannel("A"))
            return out
        return im.convert("RGB")
    except (ValueError, OSError) as exc:
        raise UnsupportedFormatError(name, f"its colour mode {im.mode!r} cannot be converted to RGB "
                                     f"({exc}). Save it as an 8-bit RGB PNG or JPEG.") from exc


def _decode_pil(data: bytes, name: str, max_pixels: int,
                draft_size: tuple[int, int] | None) -> tuple[Image.Image, tuple[str, ...]]:
    """The shared decoder: a loaded, upright RGB Pillow image and the notes about it."""
    if data is None or len(data) == 0:
        raise EmptyImageError(name, "the file is empty (0 bytes); upload it again.")
    notes: list[str] = []
    # Local and per call: never changes Image.MAX_IMAGE_PIXELS or the process-wide filter for
    # good. (catch_warnings is not thread-safe; the worst a race can do is leave the bomb warning
    # as an error for everyone — stricter, never laxer — and our own header check below runs anyway.)
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            im = Image.open(io.BytesIO(data), formats=_open_formats())
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise ImageTooLargeError(name, _bomb_message(name, exc, max_pixels)) from None
        except Exception:  # UnidentifiedImageError, or a parser that accepted the magic and then failed
            # Pillow's magic checks are loose (any "BM..." text is tried as BMP): our own sniffing
            # decides between "damaged image" and "not an image at all".
            raise _refuse_unidentified(data, name) from None

        # No `with im:` — closing an ImageFile discards its pixels, and the source is an in-memory
        # BytesIO that needs no closing; the parser is dropped with the image.
        w, h = im.size
        if w * h > max_pixels:
            raise ImageTooLargeError(name, f"{w}×{h} = {w * h / 1e6:.0f} MP is over the "
                                     f"{max_pixels / 1e6:.0f} MP limit; downscale it before uploading.")
        if w < 1 or h < 1:
            raise ImageTooSmallError(name, f"the header says {w}×{h} pixels; an image needs at least "
                                     "1×1. Re-export it.")
        if max(w, h) > MAX_ASPECT_RATIO * min(w, h):
            raise ImageTooLargeError(name, f"{w}×{h} is a {max(w, h) / min(w, h):.0f}:1 strip; at most "
                                     f"{MAX_ASPECT_RATIO:.0f}:1 can be resized into a useful picture. "
                                     "Crop it into pieces first.")
        try:
            frame_note = _frame_note(im)
            if draft_size is not None and im.format == "JPEG":
                th, tw = draft_size
                # draft() works on the stored image; orientations 5-8 swap its axes. (A JPEG's EXIF is in
                # its header, so reading it here decodes nothing.)
                want = (th, tw) if _orientation(im) in (5, 6, 7, 8) else (tw, th)
                im.draft("RGB", (max(1, int(want[0])), max(1, int(want[1]))))
            im.load()  # Pillow opens lazily: broken data only shows up here
            orientation = _orientation(im)  # after load(): see _orientation
            bits = _declared_bits(im, data) if im.mode.startswith("I;16") or im.mode == "I" else None
            if im.format == "BMP" and im.mode == "RGBA" and im.getchannel("A").getextrema() == (0, 0):
                # A 32-bit BMP whose alpha is all zero means "no alpha" to its writer; browsers show it opaque.
                im = im.convert("RGB")
            method = _ORIENTATION_TRANSPOSE.get(orientation)
            out = _to_rgb(im.transpose(method) if method is not None else im, name, bits)
        except InvalidImageError:
            raise
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise ImageTooLargeError(name, _bomb_message(name, exc, max_pixels)) from None
        except MemoryError:
            raise ImageTooLargeError(name, f"not enough memory to decode a {w}×{h} image; "
                                     "downscale it before uploading.") from None
        except Exception as exc:  # truncated data (OSError), broken chunks (SyntaxError), ...
            detail = str(exc).split("\n")[0][:120]
            raise CorruptImageError(name, f"the file is damaged or incomplete ({detail}); "
                                    "re-export or re-download it.") from None
    if frame_note:
        notes.append(frame_note)
    if min(out.size) < _SMALL_SIDE:
        notes.append(f"only {out.size[0]}×{out.size[1]} pixels: it is upscaled, so it carries little detail")
    return out, tuple(notes)


def _to_array(im: Image.Image) -> np.ndarray:
    arr = np.asarray(im)  # one copy out of Pillow's buffer
    if arr.flags.writeable:
        arr.flags.writeable = False
    return arr


def decode_image(data: bytes, name: str = "image", *, max_pixels: int = DEFAULT_MAX_PIXELS,
                 draft_size: tuple[int, int] | None = None) -> DecodedImage:
    """Decode bytes into an upright RGB ``uint8`` array of shape (H, W, 3).

    ``name`` is only used for messages (it is sanitised first). ``draft_size`` is a
    ``(height, width)`` the caller will resize to: for JPEG, decoding then happens at a reduced
    DCT scale that is still at least that large in both upright dimensions (:func:`load_image`
    passes it for you).

    Raises :class:`EmptyImageError`, :class:`UnsupportedFormatError`, :class:`CorruptImageError`,
    :class:`ImageTooLargeError` (over ``max_pixels`` or beyond 50:1), all :class:`InvalidImageError`.

    Example:
        >>> img = decode_image(png_bytes, "cat.png")
        >>> img.pixels.shape, img.notes
        ((240, 320, 3), ())
    """
    display = sanitize_name(name)
    im, notes = _decode_pil(data, display, max_pixels, draft_size)
    return DecodedImage(_to_array(im), display, notes)


# --------------------------------------------------------------------------------------------
# resizing


def _check_size(size, policy: str) -> tuple[int, int]:
    if policy not in RESIZE_POLICIES:
        raise InvalidResizeError(f"Unknown resize policy {policy!r}; choose one of {', '.join(RESIZE_POLICIES)}.")
    try:
        h, w = (int(v) for v in size)
        ok = h == size[0] and w == size[1]
    except (TypeError, ValueError):
        ok = False
    if not ok or h < 1 or w < 1 or h * w > DEFAULT_MAX_PIXELS:
        raise InvalidResizeError(f"Target size {size!r} is not usable; pass (height, width) as two positive "
                                 "whole numbers, e.g. (224, 224).")
    return h, w


def _resize_pil(im: Image.Image, size: tuple[int, int], policy: str) -> Image.Image:
    """Resize an RGB Pillow image to ``size`` = (height, width) under ``policy``; never in place."""
    th, tw = size
    w, h = im.size
    if policy == "native" or (w, h) == (tw, th):
        return im
    if policy == "stretch":
        # BILINEAR in Pillow widens its kernel when shrinking, so this antialiases on downscale.
        return im.resize((tw, th), Image.Resampling.BILINEAR, reducing_gap=_REDUCING_GAP)
    if policy == "center-crop":
        # Resize only the centred source box with the target's aspect: one resample, no intermediate.
        crop_w, crop_h = min(float(w), h * tw / th), min(float(h), w * th / tw)
        left, top = (w - crop_w) / 2.0, (h - crop_h) / 2.0
        return im.resize((tw, th), Image.Resampling.BILINEAR, box=(left, top, left + crop_w, top + crop_h),
                         reducing_gap=_REDUCING_GAP)
    # "pad": the long side fits, the rest is letterboxed with _PAD_VALUE, image centred.
    scale = min(th / h, tw / w)
    nw, nh = max(1, min(tw, round(w * scale))), max(1, min(th, round(h * scale)))
    inner = im if (nw, nh) == (w, h) else im.resize((nw, nh), Image.Resampling.BILINEAR, reducing_gap=_REDUCING_GAP)
    canvas = Image.new("RGB", (tw, th), (_PAD_VALUE,) * 3)
    canvas.paste(inner, ((tw - nw) // 2, (th - nh) // 2))
    return canvas


def resize_image(pixels: np.ndarray, size: tuple[int, int], policy: str = "stretch") -> np.ndarray:
    """Resize an (H, W, 3) ``uint8`` array to ``size`` = (height, width); never mutates ``pixels``.

    Policies:
      * ``"stretch"``: bilinear to exactly (height, width), aspect ratio ignored (antialiased when shrinking).
      * ``"center-crop"``: scale so the short side fits, keep the centre.
      * ``"pad"``: scale so the long side fits, centre it, fill the rest with black (0).
      * ``"native"``: ``pixels`` returned as is (the same array; ``size`` is ignored).

    A shrink by 3× or more first reduces by a whole factor (Pillow's ``reducing_gap=3``), which is
    1.6–2.8× faster on a large image and stays within two grey levels of the full resample.

    Example:
        >>> resize_image(np.zeros((100, 200, 3), np.uint8), (64, 64), "pad").shape
        (64, 64, 3)
    """
    if policy == "native":
        return pixels
    th, tw = _check_size(size, policy)
    arr = np.asarray(pixels)
    if arr.ndim != 3 or arr.shape[2] != 3 or arr.dtype != np.uint8 or arr.shape[0] < 1 or arr.shape[1] < 1:
        raise InvalidResizeError(f"Expected an (H, W, 3) uint8 image, got shape {arr.shape} and dtype {arr.dtype}; "
                                 "decode it with decode_image first.")
    im = Image.fromarray(np.ascontiguousarray(arr), "RGB")  # Pillow copies into its own buffer
    out = _resize_pil(im, (th, tw), policy)
    return _to_array(out)


def load_image(data: bytes, name: str, size: tuple[int, int] | None, policy: str = "stretch", *,
               max_pixels: int = DEFAULT_MAX_PIXELS) -> DecodedImage:
    """Decode and resize in one go: the per-image step of the batch pipeline.

    With a ``size``, large JPEGs are decoded at a reduced scale first (never below ``size``), and the
    resize happens on Pillow's image without a NumPy round trip. ``size=None`` or ``policy="native"``
    decodes only. Pillow releases the GIL while decoding and resizing, so callers may use threads.

    Example:
        >>> load_image(jpeg_bytes, "dog.jpg", (224, 224)).pixels.shape
        (224, 224, 3)
    """
    if size is None or policy == "native":
        if policy not in RESIZE_POLICIES:
            _check_size((1, 1), policy)
        return decode_image(data, name, max_pixels=max_pixels)
    th, tw = _check_size(size, policy)
    display = sanitize_name(name)
    im, notes = _decode_pil(data, display, max_pixels, (th, tw))
    return DecodedImage(_to_array(_resize_pil(im, (th, tw), policy)), display, notes)
