"""Gathering many image files into one batch: browser uploads, zip archives, local folders.

Nothing here decodes pixels (that is :mod:`extractor.images`' job, later and per image); this
layer decides *which bytes* go in, and says why anything was left out. Every skipped file becomes
a :class:`~extractor.errors.Failure` (``name``, ``reason``, ``kind``) with a reason a user can act on; nothing is silently lost except the debris
operating systems leave in archives and folders (``__MACOSX/``, dotfiles, ``Thumbs.db``).

Rules, in the order they are applied to each file:

1. the extension must be on :data:`~extractor.images.ALLOWED_EXTENSIONS` (``.zip`` uploads are
   opened and their members go through the same rules);
2. size caps (:class:`UploadLimits`): per file, per batch, per zip (entries, inflated bytes,
   compression ratio);
3. the same content twice (SHA-256): the first one wins, later ones are reported;
4. at most ``max_files`` images: the rest are counted and reported in one line.

Zip archives are read from memory and never extracted to disk. Member names are only ever
*displayed* (sanitised per folder component); labels come from the member's immediate parent
folder, so ``train/cats/x.png`` is labelled ``cats`` and ``x.png`` at the root has no label.

Example:
    >>> batch = gather_uploads([("cats.zip", zip_bytes), ("dog.jpg", jpg_bytes)])
    >>> [(s.name, s.label) for s in batch.sources]
    [('cats/a.png', 'cats'), ('cats/b.png', 'cats'), ('dog.jpg', None)]
    >>> [p.message for p in batch.problems]
    ['notes.txt (in cats.zip): not an image file (.txt). Use PNG, JPEG, WebP, BMP, GIF or TIFF.']
"""

from __future__ import annotations

import io
import os
import re
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .errors import Failure
from .images import ALLOWED_EXTENSIONS, content_hash, sanitize_name

__all__ = [
    "ImageSource",
    "SourceBatch",
    "UploadLimits",
    "RATIO_CHECK_MIN_BYTES",
    "gather_uploads",
    "read_zip",
    "gather_paths",
    "ImageFile",
    "list_image_files",
    "byte_size",
]

# A member that inflates to less than this is never a zip bomb, however well it compresses:
# a flat-colour BMP or a blank TIFF legitimately compresses 1000:1, and 1 MiB is harmless.
RATIO_CHECK_MIN_BYTES = 2**20
_CHUNK = 2**20  # zip members are inflated this much at a time, counted against hard caps
_FORMAT_HINT = "Use PNG, JPEG, WebP, BMP, GIF or TIFF."
_IGNORED_NAMES = {"thumbs.db", "desktop.ini", "ehthumbs.db"}  # OS debris, skipped without a word

# Refused extensions that deserve a specific way out rather than the generic one.
_EXTENSION_ADVICE = {
    ".svg": "SVG is a vector drawing; export it as PNG first.",
    ".svgz": "SVG is a vector drawing; export it as PNG first.",
    ".heic": "HEIC photos (iPhone) are not supported; export them as JPEG "
             "(on the iPhone: Settings › Camera › Formats › Most Compatible).",
    ".heif": "HEIF photos are not supported; export them as JPEG.",
    ".avif": "AVIF is not supported; export it as PNG or JPEG.",
    ".psd": "Photoshop files are not read; export a flattened PNG or JPEG.",
    ".eps": "EPS/PostScript files are not read; export them as PNG.",
    ".ai": "Illustrator files are not read; export them as PNG.",
    ".pdf": "PDF files are not read; export the page as PNG.",
    ".jxl": "JPEG XL is not supported; export it as PNG or JPEG.",
    ".ico": "Icons are not read; save the icon as PNG.",
    ".raw": "Camera RAW files are not read; export them as JPEG.",
    ".cr2": "Camera RAW files are not read; export them as JPEG.",
    ".nef": "Camera RAW files are not read; export them as JPEG.",
    ".dng": "Camera RAW files are not read; export them as JPEG.",
}


@dataclass(frozen=True)
class ImageSource:
    """One file's bytes, ready for :func:`extractor.images.load_image`.

    Example:
        >>> s = ImageSource.from_bytes("cats/a.png", png_bytes, "cats")
        >>> s.digest == content_hash(png_bytes)
        True
    """

    name: str  # display name; for zip members a sanitised relative name like "cats/a.png"
    data: bytes
    label: str | None  # class label from a folder-per-class layout, else None
    digest: str  # content_hash(data)

    @classmethod
    def from_bytes(cls, name: str, data: bytes, label: str | None = None) -> ImageSource:
        return cls(name, bytes(data), label, content_hash(data))

    def __repr__(self) -> str:  # the bytes would flood logs and tracebacks
        return (f"ImageSource(name={self.name!r}, label={self.label!r}, bytes={len(self.data)}, "
                f"digest={self.digest[:12]!r})")


@dataclass
class SourceBatch:
    """What a gather produced: the files to use, the ones skipped with reasons, and notes."""

    sources: list[ImageSource] = field(default_factory=list)
    problems: list[Failure] = field(default_factory=list)  # skipped files, each with a reason
    notes: list[str] = field(default_factory=list)  # informational, e.g. "2 duplicate files were skipped"

    @property
    def labels(self) -> list[str | None]:
        return [s.label for s in self.sources]


@dataclass(frozen=True)
class UploadLimits:
    """Caps for one batch of uploads. A ``.zip`` file itself may be up to ``max_total_bytes``;
    each image inside it, like each uploaded image, up to ``max_file_bytes``."""

    max_files: int = 500
    max_file_bytes: int = 20 * 2**20
    max_total_bytes: int = 200 * 2**20
    max_zip_members: int = 2000
    max_zip_uncompressed_bytes: int = 500 * 2**20
    max_zip_ratio: float = 100.0  # per member, inflated / compressed, above RATIO_CHECK_MIN_BYTES


def byte_size(n: float) -> str:
    """A byte count for people, in binary units: the one formatter of sizes in limits and refusals.

    Example:
        >>> byte_size(512), byte_size(28_058), byte_size(20 * 2**20), byte_size(2.5 * 2**30)
        ('512 bytes', '27.4 KiB', '20 MiB', '2.5 GiB')
    """
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= scale:
            return f"{n / scale:,.1f}".removesuffix(".0") + f" {unit}"
    return f"{int(n)} bytes"


def _extension(display_name: str) -> str:
    return os.path.splitext(display_name)[1].lower()


def _extension_problem(display_name: str) -> str:
    ext = _extension(display_name)
    if not ext:
        return ("has no file extension, so it is not treated as an image. Rename it, e.g. to .png or .jpg. "
                f"{_FORMAT_HINT}")
    advice = _EXTENSION_ADVICE.get(ext)
    if advice:
        return f"not supported ({ext}). {advice}"
    if ext == ".zip":
        return "zip archives inside zip archives are not opened; put the images in the outer archive."
    return f"not an image file ({ext}). {_FORMAT_HINT}"


class _Collector:
    """Running state of one gather: caps, de-duplication and the report, shared with read_zip."""

    def __init__(self, limits: UploadLimits, dedupe: bool = True) -> None:
        self.limits = limits
        self.dedupe = dedupe
        self.batch = SourceBatch()
        self.seen: dict[str, str] = {}  # digest -> name of the first file with it
        self.total_bytes = 0
        self.dropped_for_count = 0
        self.duplicates = 0

    @property
    def full(self) -> bool:
        return len(self.batch.sources) >= self.limits.max_files

    def problem(self, name: str, message: str) -> None:
        self.batch.problems.append(Failure(name, message, "zip member" if " (in " in name else "file"))

    def add(self, name: str, data: bytes, label: str | None) -> bool:
        """Apply the per-file rules; True when the file became a source."""
        if len(data) > self.limits.max_file_bytes:
            self.problem(name, f"{byte_size(len(data))} is over the {byte_size(self.limits.max_file_bytes)} per-file limit; "
                               "downscale or recompress it.")
            return False
        digest = content_hash(data)
        if self.dedupe and digest in self.seen:
            self.duplicates += 1
            self.problem(name, f"same content as {self.seen[digest]}; skipped the duplicate.")
            return False
        if self.full:
            self.dropped_for_count += 1
            return False
        if self.total_bytes + len(data) > self.limits.max_total_bytes:
            self.problem(name, f"skipped: the batch already holds {byte_size(self.total_bytes)} and the limit is "
                               f"{byte_size(self.limits.max_total_bytes)} in all. Upload fewer or smaller files.")
            return False
        self.seen.setdefault(digest, name)
        self.total_bytes += len(data)
        self.batch.sources.append(ImageSource(name, data, label, digest))
        return True

    def finish(self) -> SourceBatch:
        if self.dropped_for_count:
            n = self.dropped_for_count
            message = (f"{n} more image{'s were' if n != 1 else ' was'} not used: at most {self.limits.max_files} "
                       "images per batch. Split the images into smaller batches.")
            self.batch.problems.append(Failure(f"{n} more file{'s' if n != 1 else ''}", message, "batch"))
        if self.duplicates:
            n = self.duplicates
            self.batch.notes.append(f"{n} duplicate file{'s were' if n != 1 else ' was'} skipped "
                                    "(same content as an earlier file).")
        return self.batch


# --------------------------------------------------------------------------------------------
# uploads


def gather_uploads(files: Iterable[tuple[str, bytes]], limits: UploadLimits = UploadLimits()) -> SourceBatch:
    """Turn ``(name, bytes)`` pairs, as a browser upload gives them, into a :class:`SourceBatch`.

    ``.zip`` files are opened with :func:`read_zip` (in memory); other files are kept when their
    extension is an image one. Identical content is kept once. Names are sanitised for display.

    Example:
        >>> b = gather_uploads([("a.png", png), ("copy.png", png), ("x.svg", b"<svg/>")])
        >>> [s.name for s in b.sources], [p.name for p in b.problems], b.notes
        (['a.png'], ['copy.png', 'x.svg'], ['1 duplicate file was skipped (same content as an earlier file).'])
    """
    col = _Collector(limits)
    for raw_name, data in files:
        name = sanitize_name(raw_name)
        ext = _extension(name)
        if ext == ".zip":
            if len(data) > limits.max_total_bytes:
                col.problem(name, f"{byte_size(len(data))} is over the {byte_size(limits.max_total_bytes)} limit for an "
                                  "archive; split it into smaller zips.")
                continue
            _read_zip_into(col, bytes(data), name)
        elif ext in ALLOWED_EXTENSIONS:
            if len(data) == 0:  # kept out here: an empty file can never become an image
                col.problem(name, "the file is empty (0 bytes); upload it again.")
                continue
            col.add(name, bytes(data), None)
        else:
            col.problem(name, _extension_problem(name))
    return col.finish()


# --------------------------------------------------------------------------------------------
# zip archives

_DRIVE = re.compile(r"^[A-Za-z]:")


def _unsafe_member_reason(raw: str) -> str | None:
    """Why a member name is refused outright (it tries to point outside the archive)."""
    if "\\" in raw:
        return "uses backslashes in its path (a Windows path); re-create the zip with a standard zip tool."
    if raw.startswith("/") or _DRIVE.match(raw):
        return "has an absolute path; archives must hold relative paths. Re-create the zip from the image folder."
    if ".." in raw.split("/"):
        return "has '..' in its path, which points outside the archive; skipped."
    if "\x00" in raw:
        return "has a NUL character in its name; skipped."
    return None


def _silently_ignored(parts: list[str]) -> bool:
    if not parts or parts[0] == "__MACOSX":
        return True
    return any(p.startswith(".") for p in parts) or parts[-1].lower() in _IGNORED_NAMES


def read_zip(data: bytes, name: str, limits: UploadLimits = UploadLimits()) -> SourceBatch:
    """Read the images inside a zip archive from memory, never extracting anything to disk.

    Labels come from the member's immediate parent folder (``a/b/cats/x.png`` -> ``"cats"``;
    root members get ``None``). Skipped and reported: ``..``/absolute/backslash paths, non-image
    members, encrypted members, members over the size caps or with a zip-bomb compression ratio.
    Skipped silently: folders, ``__MACOSX/``, dotfiles. Declared sizes are checked first, then the
    inflated bytes are counted chunk by chunk against hard caps (declared sizes can lie). Reading
    stops at ``max_zip_members`` entries, ``max_zip_uncompressed_bytes`` inflated, or ``max_files``
    images. A file that is not a readable zip yields one :class:`~extractor.errors.Failure`.

    Example:
        >>> [(s.name, s.label) for s in read_zip(zip_bytes, "set.zip").sources]
        [('cats/a.png', 'cats'), ('cats/b.png', 'cats')]
    """
    col = _Collector(limits)
    _read_zip_into(col, data, sanitize_name(name))
    return col.finish()


def _read_zip_into(col: _Collector, data: bytes, zip_name: str) -> None:
    limits = col.limits
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        infos = archive.infolist()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, ValueError, NotImplementedError) as exc:
        reason = "it is empty" if not data else "it is damaged or not a zip archive"
        col.problem(zip_name, f"cannot be opened as a zip file ({reason}: {type(exc).__name__}). "
                              "Re-create it, or upload the images directly.")
        return
    with archive:
        if len(infos) > limits.max_zip_members:
            col.problem(zip_name, f"has {len(infos):,} entries; only the first {limits.max_zip_members:,} were read. "
                                  "Split it into smaller archives.")
            infos = infos[: limits.max_zip_members]
        inflated = 0
        for index, info in enumerate(infos):
            raw = info.filename
            unsafe = _unsafe_member_reason(raw)
            display_parts = [sanitize_name(p) for p in raw.replace("\\", "/").split("/") if p not in ("", ".", "..")]
            member = "/".join(display_parts) or "unnamed"
            where = f"{member} (in {zip_name})"
            if unsafe:
                col.problem(where, unsafe)
                continue
            parts = [p for p in raw.split("/") if p not in ("", ".")]
            if info.is_dir() or _silently_ignored(parts):
                continue
            if _extension(display_parts[-1]) not in ALLOWED_EXTENSIONS:
                col.problem(where, _extension_problem(display_parts[-1]))
                continue
            if info.flag_bits & 0x1:
                col.problem(where, "is encrypted (password-protected); re-create the zip without a password.")
                continue
            if col.full:  # count what is left without inflating any of it
                col.dropped_for_count += 1
                continue
            if info.file_size > limits.max_file_bytes:
                col.problem(where, f"{byte_size(info.file_size)} is over the {byte_size(limits.max_file_bytes)} per-file limit; "
                                   "downscale or recompress it.")
                continue
            ratio_cap = max(RATIO_CHECK_MIN_BYTES, limits.max_zip_ratio * max(info.compress_size, 1))
            if info.file_size > ratio_cap:
                col.problem(where, f"inflates {info.file_size / max(info.compress_size, 1):,.0f}:1 (over "
                                   f"{limits.max_zip_ratio:,.0f}:1), which looks like a zip bomb; skipped. "
                                   "If it is a real image, upload it on its own.")
                continue
            budget = limits.max_zip_uncompressed_bytes - inflated
            if info.file_size > budget:
                _stop_reading(col, zip_name, infos[index:], limits)
                break
            # Hard cap for the actual bytes, whatever the header declared.
            cap = int(min(limits.max_file_bytes, ratio_cap, budget))
            payload, reason, used = _inflate(archive, info, cap)
            inflated += used
            if payload is None:
                col.problem(where, reason)
                if inflated >= limits.max_zip_uncompressed_bytes:
                    _stop_reading(col, zip_name, infos[index + 1:], limits)
                    break
                continue
            if not payload:
                col.problem(where, "the file is empty (0 bytes).")
                continue
            label = display_parts[-2] if len(parts) >= 2 else None
            col.add(member, payload, label)


def _inflate(archive: zipfile.ZipFile, info: zipfile.ZipInfo, cap: int) -> tuple[bytes | None, str, int]:
    """(bytes, "", bytes read) or (None, reason, bytes read); never holds more than cap + one chunk."""
    chunks: list[bytes] = []
    size = 0
    try:
        with archive.open(info) as stream:
            while True:
                chunk = stream.read(min(_CHUNK, cap + 1 - size))
                if not chunk:
                    break
                size += len(chunk)
                chunks.append(chunk)
                if size > cap:
                    return None, (f"inflates to more than {byte_size(cap)} (its header declared {byte_size(info.file_size)}); "
                                  "skipped as a possible zip bomb."), size
    except NotImplementedError:
        return None, ("uses a compression method Python cannot read; re-create the zip with standard "
                      "(deflate) compression."), size
    except RuntimeError as exc:  # encrypted entries that did not set the flag
        return None, f"cannot be read ({exc}); re-create the zip without a password.", size
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
        detail = str(exc).split("\n")[0][:100]
        return None, f"is damaged inside the archive ({detail}); re-create the zip.", size
    return b"".join(chunks), "", size


def _stop_reading(col: _Collector, zip_name: str, rest: list[zipfile.ZipInfo], limits: UploadLimits) -> None:
    left = sum(1 for i in rest if not i.is_dir())
    col.problem(zip_name, f"reading stopped after {byte_size(limits.max_zip_uncompressed_bytes)} of inflated data; "
                          f"{left} entr{'ies' if left != 1 else 'y'} not read. Split it into smaller archives.")


# --------------------------------------------------------------------------------------------
# local files and folders (command line)


def _is_hidden(name: str) -> bool:
    return name.startswith(".") or name == "__MACOSX" or name.lower() in _IGNORED_NAMES


def _walk(paths: Sequence[str | os.PathLike]) -> tuple[list[tuple[str, Path, str | None]], list[Failure]]:
    """(name, path, label) for every image file under ``paths``, in gather order, and the problems."""
    found: list[tuple[str, Path, str | None]] = []  # (name, path, label)
    problems: list[Failure] = []
    for given in paths:
        given_str = os.fspath(given)
        path = Path(given_str)
        if path.is_dir():
            for root, dirs, files in os.walk(path):
                dirs[:] = sorted(d for d in dirs if not _is_hidden(d))
                rel = Path(root).relative_to(path)
                label = rel.parts[0] if rel.parts else None
                for f in sorted(files):
                    if _is_hidden(f) or _extension(f) not in ALLOWED_EXTENSIONS:
                        continue
                    found.append((os.path.join(root, f), Path(root, f), label))
        elif path.is_file():
            if _extension(path.name) not in ALLOWED_EXTENSIONS:
                problems.append(Failure(given_str, _extension_problem(path.name), "file"))
                continue
            found.append((given_str, path, None))
        else:
            problems.append(Failure(given_str, "no such file or folder.", "file"))

    return found, problems


def gather_paths(paths: Sequence[str | os.PathLike], *, max_file_bytes: int = 256 * 2**20) -> SourceBatch:
    """Collect image files from local files and folders, for the command line.

    Folders are walked recursively and deterministically: top-down, each folder's own files in
    sorted order before its subfolders (also sorted); symlinked folders are not followed; hidden
    entries are skipped, and so are non-image files inside folders (silently).
    Folder-per-class: an image inside a subfolder of a given folder is labelled with that
    first-level subfolder's name (``data/cats/young/a.png`` given ``data`` -> ``"cats"``); images
    directly in a given folder, or given as files, get ``None``. ``name`` is the path as given or
    found. Problems: a missing path, a given file with a non-image extension, unreadable or
    oversized files. Files with identical content are all kept (one row per file), with a note.

    Example:
        >>> b = gather_paths(["data/"])
        >>> [(s.name, s.label) for s in b.sources]
        [('data/top.png', None), ('data/cats/a.png', 'cats'), ('data/dogs/b.png', 'dogs')]
    """
    found, problems = _walk(paths)
    batch = SourceBatch(problems=problems)
    seen_paths: set[Path] = set()
    seen_digests: dict[str, str] = {}
    repeated = same_content = 0
    for name, path, label in found:
        try:
            key = path.resolve()
        except OSError:
            key = path
        if key in seen_paths:  # the same file reached twice (given twice, or a file inside a given folder)
            repeated += 1
            continue
        seen_paths.add(key)
        try:
            size = path.stat().st_size
            if size > max_file_bytes:
                batch.problems.append(Failure(name, f"{byte_size(size)} is over the {byte_size(max_file_bytes)} "
                                                    "per-file limit; downscale it.", "file"))
                continue
            data = path.read_bytes()
        except OSError as exc:
            batch.problems.append(Failure(name, f"cannot be read ({exc.strerror or type(exc).__name__}).", "file"))
            continue
        digest = content_hash(data)
        if digest in seen_digests:
            same_content += 1
        else:
            seen_digests[digest] = name
        batch.sources.append(ImageSource(name, data, label, digest))
    if repeated:
        batch.notes.append(f"{repeated} file{'s were' if repeated != 1 else ' was'} listed more than once and "
                           "read once.")
    if same_content:
        batch.notes.append(f"{same_content} file{'s have' if same_content != 1 else ' has'} the same content as "
                           "another file; all were kept (compare their digest to de-duplicate).")
    return batch


@dataclass(frozen=True)
class ImageFile:
    """One image file found on disk, not read yet: ``name`` as given or found, ``label`` from its class folder."""

    name: str
    path: Path
    label: str | None


def list_image_files(paths: Sequence[str | os.PathLike]) -> tuple[list[ImageFile], list[Failure]]:
    """The files :func:`gather_paths` would read, by the same rules, without reading them.

    For engines that read the bytes elsewhere (``--engine ray``): a file reached twice is
    listed once. Size and readability are checked where the file is read.

    Example:
        >>> files, problems = list_image_files(["data/"])
        >>> [(f.name, f.label) for f in files]
        [('data/top.png', None), ('data/cats/a.png', 'cats'), ('data/dogs/b.png', 'dogs')]
    """
    found, problems = _walk(paths)
    files, seen = [], set()
    for name, path, label in found:
        try:
            key = path.resolve()
        except OSError:
            key = path
        if key not in seen:
            seen.add(key)
            files.append(ImageFile(name, path, label))
    return files, problems
