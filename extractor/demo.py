"""Built-in demo image sets: labelled, offline, deterministic.

Three sets, all plain NumPy (``(H, W, 3)`` uint8 RGB) with labels and file-like names:

- ``shapes``: procedurally drawn shapes and textures (:data:`SHAPE_CLASSES`) in random colours,
  sizes, positions and rotations, on gradient/blotchy backgrounds with pixel noise. Colour and
  position carry no class information on purpose: early layers of a CNN see colour and edges,
  only later layers see shape, so the layer-by-layer comparison has something to show.
- ``digits``: scikit-learn's bundled 8×8 handwritten digits, upscaled (no download).
- ``photos``: scikit-learn's two bundled sample photos plus square crops of them, labelled by
  source photo (``china`` / ``flower``).

Example:
    >>> ds = make_shapes(per_class=3, size=64, seed=0)
    >>> len(ds.images), ds.images[0].shape, ds.images[0].dtype, ds.names[0]
    (21, (64, 64, 3), dtype('uint8'), 'circle/circle_0000.png')
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from extractor.errors import LayerExplorerError

__all__ = [
    "DEMO_SETS",
    "SHAPE_CLASSES",
    "DemoSet",
    "UnknownDemoSetError",
    "export_demo_set",
    "load_demo_set",
    "load_digits_set",
    "load_photos",
    "make_shapes",
]

SHAPE_CLASSES = ("circle", "square", "triangle", "star", "cross", "stripes", "checkerboard")
DEMO_SETS = ("shapes", "digits", "photos")

# Minimum RGB (Euclidean, 0..255) distance between a shape's colour and both background colours:
# large enough that every shape is clearly visible, small enough that colours stay varied.
_MIN_CONTRAST = 120.0


class UnknownDemoSetError(LayerExplorerError):
    """The demo set name is not one of :data:`DEMO_SETS`."""


@dataclass(frozen=True)
class DemoSet:
    """A labelled demo image set.

    ``images[i]`` is an ``(H, W, 3)`` uint8 RGB array, ``labels[i]`` its class (``None`` only for
    sets without classes; all built-in sets have labels) and ``names[i]`` a file-like name
    ``"<label>/<stem>.<ext>"``, the path :func:`export_demo_set` writes it to.
    """

    name: str
    images: list[np.ndarray]
    labels: list[str] | None
    names: list[str]

    @property
    def classes(self) -> tuple[str, ...]:
        """Distinct labels in first-seen order (empty when unlabelled)."""
        return tuple(dict.fromkeys(self.labels)) if self.labels else ()


# --------------------------------------------------------------------------------------------
# shapes


def _box_sdf(x: np.ndarray, y: np.ndarray, hx: float, hy: float) -> np.ndarray:
    """Signed distance to an axis-aligned box of half-sizes (hx, hy); negative inside."""
    qx, qy = np.abs(x) - hx, np.abs(y) - hy
    outside = np.hypot(np.maximum(qx, 0.0), np.maximum(qy, 0.0))
    return outside + np.minimum(np.maximum(qx, qy), 0.0)


def _star_sdf(x: np.ndarray, y: np.ndarray, r: float = 1.0, rf: float = 0.45) -> np.ndarray:
    """Signed distance to a five-pointed star (Inigo Quilez's sdStar5, vectorised)."""
    k1x, k1y = 0.809016994375, -0.587785252292
    k2x, k2y = -k1x, k1y
    x = np.abs(x)
    d = np.maximum(k1x * x + k1y * y, 0.0)
    x, y = x - 2 * d * k1x, y - 2 * d * k1y
    d = np.maximum(k2x * x + k2y * y, 0.0)
    x, y = x - 2 * d * k2x, y - 2 * d * k2y
    x = np.abs(x)
    y = y - r
    bax, bay = rf * -k1y, rf * k1x - 1.0
    h = np.clip((x * bax + y * bay) / (bax * bax + bay * bay), 0.0, r)
    return np.hypot(x - bax * h, y - bay * h) * np.sign(y * bax - x * bay)


def _triangle_sdf(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Equilateral triangle with circumradius 1 (exact inside, a close bound outside)."""
    d = None
    for a in (np.pi / 2, np.pi / 2 + 2 * np.pi / 3, np.pi / 2 + 4 * np.pi / 3):
        # Edge normals point away from the vertices; the inradius of a unit-circumradius triangle is 0.5.
        e = -(np.cos(a) * x + np.sin(a) * y) - 0.5
        d = e if d is None else np.maximum(d, e)
    return d


def _shape_sdf(cls: str, u: np.ndarray, v: np.ndarray, region_square: np.ndarray) -> np.ndarray:
    """Signed distance (unit coords, shape inscribed in the unit disc) of a class's outline."""
    if cls == "circle":
        return np.hypot(u, v) - 0.95
    if cls == "square":
        return _box_sdf(u, v, 0.72, 0.72)
    if cls == "triangle":
        return _triangle_sdf(u, v)
    if cls == "star":
        return _star_sdf(u, v)
    if cls == "cross":
        return np.minimum(_box_sdf(u, v, 0.95, 0.3), _box_sdf(u, v, 0.3, 0.95))
    # Textures fill a disc or a square region, so their outline says nothing about the class.
    sq = region_square[:, None, None]
    return np.where(sq, _box_sdf(u, v, 0.75, 0.75), np.hypot(u, v) - 0.95)


def _bilinear_matrix(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in) matrix that linearly interpolates a coarse grid up to n_out samples."""
    pos = np.linspace(0, n_in - 1, n_out)
    lo = np.clip(np.floor(pos).astype(int), 0, n_in - 2)
    frac = pos - lo
    m = np.zeros((n_out, n_in))
    m[np.arange(n_out), lo] = 1 - frac
    m[np.arange(n_out), lo + 1] = frac
    return m


def _contrasting_colours(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Shape colour and two background colours, each background far enough from the shape colour."""
    fg = rng.uniform(0, 255, (n, 3))
    bg1 = rng.uniform(0, 255, (n, 3))
    bg2 = np.clip(bg1 + rng.uniform(-70, 70, (n, 3)), 0, 255)
    for _ in range(100):  # rejection sampling; a handful of rounds suffices in practice
        bad = (np.linalg.norm(fg - bg1, axis=1) < _MIN_CONTRAST) | (np.linalg.norm(fg - bg2, axis=1) < _MIN_CONTRAST)
        if not bad.any():
            break
        k = int(bad.sum())
        fg[bad] = rng.uniform(0, 255, (k, 3))
        bg1[bad] = rng.uniform(0, 255, (k, 3))
        bg2[bad] = np.clip(bg1[bad] + rng.uniform(-70, 70, (k, 3)), 0, 255)
    # Anything still too close (never seen, but cheap to rule out): use the complementary colour.
    fg[bad] = 255.0 - bg1[bad]
    return fg, bg1, bg2


def _draw_class(cls: str, n: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` images of one class as an (n, size, size, 3) uint8 array; fully vectorised."""
    px = np.arange(size, dtype=np.float64) + 0.5
    gx, gy = np.meshgrid(px, px)  # (size, size), pixel centres

    radius = rng.uniform(0.2, 0.38, n) * size  # circumradius in pixels
    margin = radius * 0.9
    cx = rng.uniform(margin, size - margin)
    cy = rng.uniform(margin, size - margin)
    theta = rng.uniform(0, 2 * np.pi, n)
    fg, bg1, bg2 = _contrasting_colours(rng, n)

    # Unit coordinates of every pixel in each shape's own rotated frame.
    dx = (gx[None] - cx[:, None, None]) / radius[:, None, None]
    dy = (gy[None] - cy[:, None, None]) / radius[:, None, None]
    c, s = np.cos(theta)[:, None, None], np.sin(theta)[:, None, None]
    u, v = c * dx + s * dy, -s * dx + c * dy

    region_square = rng.random(n) < 0.5
    sdf_px = _shape_sdf(cls, u, v, region_square) * radius[:, None, None]
    alpha = np.clip(0.5 - sdf_px, 0.0, 1.0)  # one-pixel anti-aliased edge

    if cls in ("stripes", "checkerboard"):
        period = radius * 2 / rng.uniform(2.5, 4.5, n)  # 2.5-4.5 stripe pairs across the shape
        per = period[:, None, None]

        def soft_bands(t: np.ndarray) -> np.ndarray:
            f = t * radius[:, None, None] / per
            f = f - np.floor(f)
            return np.clip(0.5 - (np.abs(f - 0.25) - 0.25) * per, 0.0, 1.0)

        a = soft_bands(u)
        if cls == "checkerboard":
            b = soft_bands(v)
            a = a * (1 - b) + (1 - a) * b  # soft XOR
        alpha = alpha * a

    # Background: two close colours mixed by a linear gradient and/or blotchy low-frequency noise.
    grid = int(rng.integers(3, 6))
    m = _bilinear_matrix(grid, size)
    blotch = m @ rng.random((n, grid, grid)) @ m.T  # (n, size, size) in 0..1
    phi = rng.uniform(0, 2 * np.pi, n)[:, None, None]
    ramp = (np.cos(phi) * gx[None] + np.sin(phi) * gy[None]) / size
    ramp = (ramp - ramp.min(axis=(1, 2), keepdims=True)) / (np.ptp(ramp, axis=(1, 2), keepdims=True) + 1e-9)
    w = rng.random(n)[:, None, None]
    mix = (w * ramp + (1 - w) * blotch)[..., None]
    bg = bg1[:, None, None, :] * (1 - mix) + bg2[:, None, None, :] * mix

    # A little shading inside the shape so it is not a flat colour either.
    shade = 1.0 + rng.uniform(-0.15, 0.15, n)[:, None, None, None] * (u[..., None] * 0.5)
    fg_img = np.clip(fg[:, None, None, :] * shade, 0, 255)

    a = alpha[..., None]
    img = bg * (1 - a) + fg_img * a
    sigma = rng.uniform(0, 10, n)[:, None, None, None]
    img = img + rng.standard_normal(img.shape, dtype=np.float32) * sigma
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def make_shapes(per_class: int = 20, size: int = 64, seed: int = 0) -> DemoSet:
    """Procedurally drawn shapes, ``per_class`` images of each of :data:`SHAPE_CLASSES`.

    Deterministic from ``seed``; each class draws from its own child seed, so the images of one
    class do not depend on the others. Images come class by class, in :data:`SHAPE_CLASSES` order.

    Example:
        >>> ds = make_shapes(per_class=2, size=32, seed=1)
        >>> ds.labels[:3], ds.images[0].shape
        (['circle', 'circle', 'square'], (32, 32, 3))
    """
    if not isinstance(per_class, (int, np.integer)) or per_class < 1:
        raise LayerExplorerError(f"per_class={per_class!r}: expected a positive whole number of images per class.")
    if not isinstance(size, (int, np.integer)) or not 8 <= size <= 1024:
        raise LayerExplorerError(f"size={size!r}: expected a whole number of pixels between 8 and 1024.")
    children = np.random.SeedSequence(seed).spawn(len(SHAPE_CLASSES))
    images: list[np.ndarray] = []
    labels: list[str] = []
    names: list[str] = []
    # Draw in chunks so memory stays bounded (a few float64 (chunk, size, size) arrays at a time).
    chunk = max(1, 400_000 // (size * size))
    for cls, child in zip(SHAPE_CLASSES, children, strict=False):
        rng = np.random.default_rng(child)
        done = 0
        while done < per_class:
            k = min(chunk, per_class - done)
            images.extend(_draw_class(cls, k, size, rng))
            done += k
        labels.extend([cls] * per_class)
        names.extend(f"{cls}/{cls}_{i:04d}.png" for i in range(per_class))
    return DemoSet("shapes", images, labels, names)


# --------------------------------------------------------------------------------------------
# digits and photos


def load_digits_set(per_class: int | None = None, size: int = 64, seed: int = 0) -> DemoSet:
    """scikit-learn's bundled 8×8 digits, upscaled (bicubic) to ``size`` and made RGB.

    White digits on black, labels ``"0"`` … ``"9"``. ``per_class=None`` keeps all 1797 images
    (about 180 per digit); otherwise ``per_class`` of each digit, picked at random with ``seed``.

    Example:
        >>> ds = load_digits_set(per_class=5, size=32)
        >>> len(ds.images), ds.images[0].shape, ds.classes[:3]
        (50, (32, 32, 3), ('0', '1', '2'))
    """
    from sklearn.datasets import load_digits

    if not isinstance(size, (int, np.integer)) or not 8 <= size <= 1024:
        raise LayerExplorerError(f"size={size!r}: expected a whole number of pixels between 8 and 1024.")
    data = load_digits()
    target = np.asarray(data.target)
    if per_class is None:
        index = np.arange(len(target))
    else:
        if not isinstance(per_class, (int, np.integer)) or per_class < 1:
            raise LayerExplorerError(f"per_class={per_class!r}: expected a positive whole number or None (all).")
        rng = np.random.default_rng(seed)
        picks = []
        for digit in range(10):
            idx = np.flatnonzero(target == digit)
            picks.append(np.sort(rng.choice(idx, size=min(per_class, len(idx)), replace=False)))
        index = np.concatenate(picks)
    images, labels, names = [], [], []
    for i in index:
        grey = Image.fromarray(np.rint(data.images[i] * (255 / 16)).astype(np.uint8), mode="L")
        grey = grey.resize((size, size), Image.Resampling.BICUBIC)
        images.append(np.asarray(grey.convert("RGB")).copy())
        label = str(int(target[i]))
        labels.append(label)
        names.append(f"{label}/digit_{int(i):04d}.png")
    return DemoSet("digits", images, labels, names)


# (left, top, side) as fractions of the photo's height: varied scales and positions.
_PHOTO_CROPS = ((0.0, 0.0, 0.6), (0.9, 0.2, 0.5), (0.25, 0.25, 0.75), (0.5, 0.5, 0.45), (0.1, 0.45, 0.5))


def load_photos(size: int | None = None) -> DemoSet:
    """scikit-learn's bundled ``china.jpg`` and ``flower.jpg`` plus five square crops of each.

    Labels are the source photo (``"china"``, ``"flower"``). ``size=None`` keeps native pixels
    (full photos 427×640, crops 192–320 px); an int resizes every image to ``size``×``size``
    (the full photos are stretched, as the ``"stretch"`` decoder policy would).

    Example:
        >>> ds = load_photos(size=64)
        >>> len(ds.images), ds.images[0].shape, ds.names[0]
        (12, (64, 64, 3), 'china/china_full.jpg')
    """
    from sklearn.datasets import load_sample_images

    if size is not None and (not isinstance(size, (int, np.integer)) or not 8 <= size <= 4096):
        raise LayerExplorerError(f"size={size!r}: expected None (native) or a whole number of pixels, 8 to 4096.")
    bunch = load_sample_images()
    images, labels, names = [], [], []
    for photo, filename in zip(bunch.images, bunch.filenames, strict=False):
        label = Path(filename).stem
        h, w = photo.shape[:2]
        pieces = [("full", photo)]
        for k, (fx, fy, fs) in enumerate(_PHOTO_CROPS):
            side = int(round(fs * h))
            left = min(int(round(fx * h)), w - side)
            top = min(int(round(fy * h)), h - side)
            pieces.append((f"crop{k}", photo[top : top + side, left : left + side]))
        for stem, pixels in pieces:
            if size is not None:
                pixels = np.asarray(Image.fromarray(pixels).resize((size, size), Image.Resampling.BILINEAR))
            images.append(np.ascontiguousarray(pixels, dtype=np.uint8))
            labels.append(label)
            names.append(f"{label}/{label}_{stem}.jpg")
    return DemoSet("photos", images, labels, names)


# --------------------------------------------------------------------------------------------
# dispatch and export


def _resolve_name(name: str) -> str:
    key = str(name).strip().lower()
    key = key.removeprefix("demo-").removeprefix("demo:")
    if key not in DEMO_SETS:
        close = difflib.get_close_matches(key, DEMO_SETS, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise UnknownDemoSetError(f"No demo set {name!r}; expected one of {', '.join(DEMO_SETS)}.{hint}")
    return key


def load_demo_set(name: str, per_class: int = 20, seed: int = 0, size: int = 64) -> DemoSet:
    """Load a demo set by name (``"shapes"``, ``"digits"``, ``"photos"``; a ``demo-`` prefix is accepted).

    ``per_class`` and ``seed`` apply to shapes and digits; photos are always the same 12 images.

    Example:
        >>> load_demo_set("digits", per_class=2, size=16).classes
        ('0', '1', '2', '3', '4', '5', '6', '7', '8', '9')
    """
    key = _resolve_name(name)
    if key == "shapes":
        return make_shapes(per_class=per_class, size=size, seed=seed)
    if key == "digits":
        return load_digits_set(per_class=per_class, size=size, seed=seed)
    return load_photos(size=size)


def export_demo_set(name: str, out_dir: str | Path, per_class: int = 20, seed: int = 0, size: int = 64) -> list[Path]:
    """Write a demo set as one folder per class (PNG; photos as JPEG at native size) and return the paths.

    Existing files with the same names are overwritten; nothing else in ``out_dir`` is touched.

    Example:
        >>> paths = export_demo_set("shapes", tmp_path / "shapes", per_class=2)
        >>> sorted({p.parent.name for p in paths})[:2]
        ['checkerboard', 'circle']
    """
    key = _resolve_name(name)
    ds = load_photos(size=None) if key == "photos" else load_demo_set(key, per_class=per_class, seed=seed, size=size)
    out = Path(out_dir)
    written: list[Path] = []
    for pixels, rel in zip(ds.images, ds.names, strict=False):
        path = out / rel  # names are ours ("<label>/<stem>.<ext>"), never user input
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.suffix == ".jpg":
            Image.fromarray(pixels).save(path, format="JPEG", quality=92)
        else:
            Image.fromarray(pixels).save(path, format="PNG")
        written.append(path)
    return written
