"""Gathering files: uploads, zip archives (never extracted), folders; caps, de-duplication, labels.

Every file and archive is built in the test (Pillow, zipfile, io). Nothing decodes pixels here,
so "images" are small real PNGs where content matters and labelled bytes where only size does.
"""

from __future__ import annotations

import builtins
import io
import os
import struct
import zipfile

import numpy as np
import pytest
from PIL import Image

from extractor.errors import Failure
from extractor.images import content_hash, decode_image
from extractor.sources import (
    RATIO_CHECK_MIN_BYTES,
    ImageSource,
    SourceBatch,
    UploadLimits,
    gather_paths,
    gather_uploads,
    read_zip,
)

# --------------------------------------------------------------------------------------------
# builders


def png(seed: int = 0, size: int = 8) -> bytes:
    """A small, real PNG whose content differs per seed."""
    arr = np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "PNG")
    return buf.getvalue()


def make_zip(entries, compression=zipfile.ZIP_DEFLATED) -> bytes:
    """entries: (name, bytes) pairs, names written verbatim (ZipInfo), so '..' and '/abs' survive."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression) as zf:
        for name, data in entries:
            info = zipfile.ZipInfo(name)
            info.compress_type = compression
            zf.writestr(info, data)
    return buf.getvalue()


def _patch_members(data: bytes, member: str, *, flag_bits: int | None = None, file_size: int | None = None) -> bytes:
    """Rewrite header fields of one member in both its local header and the central directory."""
    out = bytearray(data)
    name = member.encode()
    pos = 0
    while (pos := out.find(b"PK\x03\x04", pos)) != -1:  # local headers
        n = struct.unpack_from("<H", out, pos + 26)[0]
        if out[pos + 30 : pos + 30 + n] == name:
            if flag_bits is not None:
                struct.pack_into("<H", out, pos + 6, struct.unpack_from("<H", out, pos + 6)[0] | flag_bits)
            if file_size is not None:
                struct.pack_into("<I", out, pos + 22, file_size)
        pos += 4
    pos = 0
    while (pos := out.find(b"PK\x01\x02", pos)) != -1:  # central directory
        n = struct.unpack_from("<H", out, pos + 28)[0]
        if out[pos + 46 : pos + 46 + n] == name:
            if flag_bits is not None:
                struct.pack_into("<H", out, pos + 8, struct.unpack_from("<H", out, pos + 8)[0] | flag_bits)
            if file_size is not None:
                struct.pack_into("<I", out, pos + 24, file_size)
        pos += 4
    return bytes(out)


@pytest.fixture(scope="module")
def zeros_bomb() -> bytes:
    """64 MiB of zeros deflated to ~64 KB (about 1000:1), streamed so the test never holds 64 MiB."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("cats/ok.png", png(1))
        with zf.open("cats/bomb.bmp", "w") as f:
            chunk = bytes(2**20)
            for _ in range(64):
                f.write(chunk)
    return buf.getvalue()


@pytest.fixture
def count_inflations(monkeypatch):
    """Record which members read_zip actually opens for reading."""
    opened = []
    real = zipfile.ZipFile.open

    def spy(self, name, mode="r", *args, **kwargs):
        if mode == "r":  # building archives in the test writes through open(..., "w"): not counted
            opened.append(name.filename if isinstance(name, zipfile.ZipInfo) else name)
        return real(self, name, mode, *args, **kwargs)

    monkeypatch.setattr(zipfile.ZipFile, "open", spy)
    return opened


def names(batch: SourceBatch) -> list[str]:
    return [s.name for s in batch.sources]


def problem_text(batch: SourceBatch) -> str:
    return "\n".join(p.message for p in batch.problems)


# --------------------------------------------------------------------------------------------
# data types


def test_image_source_carries_its_digest_and_a_short_repr():
    data = png(1)
    s = ImageSource.from_bytes("a.png", data, "cats")
    assert s.digest == content_hash(data) and s.label == "cats"
    assert "bytes=" in repr(s) and str(data[:8]) not in repr(s)


def test_default_limits_match_the_documented_values():
    lim = UploadLimits()
    assert (lim.max_files, lim.max_file_bytes, lim.max_total_bytes) == (500, 20 * 2**20, 200 * 2**20)
    assert (lim.max_zip_members, lim.max_zip_uncompressed_bytes, lim.max_zip_ratio) == (2000, 500 * 2**20, 100.0)


# --------------------------------------------------------------------------------------------
# uploads


def test_uploads_keep_images_in_order_without_labels():
    batch = gather_uploads([("b.png", png(1)), ("a.JPG", png(2)), ("c.tiff", png(3))])
    assert names(batch) == ["b.png", "a.JPG", "c.tiff"]
    assert batch.labels == [None, None, None]
    assert batch.problems == [] and batch.notes == []
    assert all(s.digest == content_hash(s.data) for s in batch.sources)


def test_same_file_twice_is_deduplicated_first_one_wins():
    data = png(1)
    batch = gather_uploads([("first.png", data), ("other.png", png(2)), ("second.png", data)])
    assert names(batch) == ["first.png", "other.png"]
    assert [p.name for p in batch.problems] == ["second.png"]
    assert "same content as first.png" in batch.problems[0].message
    assert batch.notes == ["1 duplicate file was skipped (same content as an earlier file)."]


def test_too_many_files_are_capped_with_a_count():
    files = [(f"{i}.png", png(i)) for i in range(7)]
    batch = gather_uploads(files, UploadLimits(max_files=3))
    assert names(batch) == ["0.png", "1.png", "2.png"]
    assert len(batch.problems) == 1
    assert batch.problems[0].message == ("4 more images were not used: at most 3 images per batch. "
                                         "Split the images into smaller batches.")


@pytest.mark.parametrize("name, advice", [
    ("drawing.svg", "SVG is a vector drawing"),
    ("IMG_0001.HEIC", "HEIC photos (iPhone)"),
    ("layers.psd", "Photoshop"),
    ("logo.eps", "EPS/PostScript"),
    ("scan.pdf", "PDF"),
    ("notes.txt", "not an image file (.txt)"),
    ("README", "has no file extension"),
])
def test_refused_extensions_get_a_specific_reason_and_good_files_still_come_through(name, advice):
    batch = gather_uploads([(name, b"whatever bytes"), ("good.png", png(1))])
    assert names(batch) == ["good.png"]
    assert [p.name for p in batch.problems] == [name]
    assert batch.problems[0].message.startswith(f"{name}: ")
    assert advice in batch.problems[0].message


def test_extension_check_is_case_insensitive():
    batch = gather_uploads([("A.PNG", png(1)), ("b.JpEg", png(2)), ("c.WebP", png(3)), ("d.Gif", png(4))])
    assert len(batch.sources) == 4 and not batch.problems


def test_image_bytes_with_a_refused_extension_are_still_refused_by_name():
    # The decoder ignores names; the upload layer refuses by name, so both gates apply.
    batch = gather_uploads([("photo.heic", png(1))])
    assert batch.sources == [] and "HEIC" in problem_text(batch)


def test_empty_upload_is_a_problem_not_a_source():
    batch = gather_uploads([("empty.png", b""), ("ok.png", png(1))])
    assert names(batch) == ["ok.png"] and "0 bytes" in problem_text(batch)


def test_file_over_the_per_file_cap_is_refused():
    batch = gather_uploads([("huge.png", b"\0" * 5000), ("ok.png", png(1))], UploadLimits(max_file_bytes=4000))
    assert names(batch) == ["ok.png"]
    assert "per-file limit" in problem_text(batch)


def test_total_bytes_cap_skips_what_does_not_fit():
    files = [(f"{i}.bmp", bytes([i]) * 3000) for i in range(5)]
    batch = gather_uploads(files, UploadLimits(max_total_bytes=10_000))
    assert names(batch) == ["0.bmp", "1.bmp", "2.bmp"]
    assert [p.name for p in batch.problems] == ["3.bmp", "4.bmp"]
    assert "limit is" in batch.problems[0].message


def test_upload_names_with_dot_dot_and_folders_are_sanitised():
    batch = gather_uploads([("../../etc/cron.d/evil.png", png(1)), ("C:\\Users\\me\\cat.png", png(2))])
    assert names(batch) == ["evil.png", "cat.png"]


def test_upload_names_with_control_characters_are_sanitised():
    batch = gather_uploads([("ca\x00t\x1b[2J\n.png", png(1)), ("x\u202egnp.png", png(2))])
    assert names(batch) == ["cat[2J .png", "xgnp.png"]
    assert all(ch.isprintable() for n in names(batch) for ch in n)


def test_500_character_name_is_shortened_and_keeps_its_extension():
    long = "p" * 500 + ".png"
    batch = gather_uploads([(long, png(1)), ("x" * 300 + ".svg", b"<svg/>")])
    assert len(batch.sources[0].name) == 80 and batch.sources[0].name.endswith(".png") and "…" in batch.sources[0].name
    assert len(batch.problems[0].name) == 80  # even refused names are shortened


def test_names_are_never_used_as_paths(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)

    def no_files(*args, **kwargs):
        raise AssertionError(f"filesystem access: {args!r}")

    archive = make_zip([("../../escape.png", png(1)), ("/etc/abs.png", png(2)), ("cats/ok.png", png(3))])
    monkeypatch.setattr(builtins, "open", no_files)
    monkeypatch.setattr(io, "open", no_files)
    monkeypatch.setattr(os, "open", no_files)
    batch = gather_uploads([("../../../tmp/evil.png", png(4)), ("../up.zip", archive)])
    monkeypatch.undo()
    assert names(batch) == ["evil.png", "cats/ok.png"]
    assert len(batch.problems) == 2  # the '..' and absolute members, reported by sanitised name
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------------------------
# zip archives


def test_zip_labels_come_from_the_immediate_parent_folder():
    archive = make_zip([
        ("train/animals/cats/a.png", png(1)),
        ("train/animals/dogs/b.png", png(2)),
        ("cats/c.png", png(3)),
        ("root.png", png(4)),
    ])
    batch = read_zip(archive, "set.zip")
    assert [(s.name, s.label) for s in batch.sources] == [
        ("train/animals/cats/a.png", "cats"),
        ("train/animals/dogs/b.png", "dogs"),
        ("cats/c.png", "cats"),
        ("root.png", None),
    ]
    assert batch.problems == []


def test_zip_through_uploads_merges_with_plain_files_and_dedupes_across_them():
    shared = png(9)
    archive = make_zip([("cats/a.png", png(1)), ("cats/same.png", shared)])
    batch = gather_uploads([("same-outside.png", shared), ("set.zip", archive)])
    assert [(s.name, s.label) for s in batch.sources] == [("same-outside.png", None), ("cats/a.png", "cats")]
    assert "same content as same-outside.png" in problem_text(batch)
    assert batch.notes == ["1 duplicate file was skipped (same content as an earlier file)."]


def test_zip_dot_dot_entries_are_skipped_and_reported():
    archive = make_zip([("../evil.png", png(1)), ("a/../../evil2.png", png(2)), ("ok/good.png", png(3))])
    batch = read_zip(archive, "x.zip")
    assert names(batch) == ["ok/good.png"]
    assert len(batch.problems) == 2
    assert all("'..'" in p.message and "(in x.zip)" in p.name for p in batch.problems)


def test_zip_absolute_drive_and_backslash_paths_are_skipped_and_reported():
    archive = make_zip([("/etc/abs.png", png(1)), ("C:/Windows/drive.png", png(2)),
                        ("folder\\win.png", png(3)), ("good.png", png(4))])
    batch = read_zip(archive, "x.zip")
    assert names(batch) == ["good.png"]
    text = problem_text(batch)
    assert text.count("absolute path") == 2 and "backslashes" in text


def test_zip_directories_macosx_and_dotfiles_are_skipped_silently():
    archive = make_zip([
        ("cats/", b""),
        ("__MACOSX/cats/._a.png", b"\x00\x05\x16\x07junk"),
        (".DS_Store", b"junk"),
        ("cats/.hidden.png", png(1)),
        (".git/config.png", png(2)),
        ("cats/Thumbs.db", b"junk"),
        ("cats/a.png", png(3)),
    ])
    batch = read_zip(archive, "mac.zip")
    assert [(s.name, s.label) for s in batch.sources] == [("cats/a.png", "cats")]
    assert batch.problems == [] and batch.notes == []


def test_zip_non_image_members_are_reported_and_images_still_come_through():
    archive = make_zip([("readme.txt", b"hello"), ("cats/vector.svg", b"<svg/>"), ("inner.zip", make_zip([])),
                        ("cats/a.png", png(1))])
    batch = read_zip(archive, "set.zip")
    assert names(batch) == ["cats/a.png"]
    assert [p.name for p in batch.problems] == ["readme.txt (in set.zip)", "cats/vector.svg (in set.zip)",
                                                "inner.zip (in set.zip)"]
    assert "zip archives inside zip archives" in batch.problems[2].message


def test_zip_member_names_are_sanitised_per_component():
    archive = make_zip([("ca\x1bts/ph\x07oto" + "o" * 200 + ".png", png(1))])
    src = read_zip(archive, "x.zip").sources[0]
    assert src.label == "cats"
    folder, file = src.name.split("/")
    assert folder == "cats" and len(file) == 80 and file.endswith(".png") and "\x07" not in file


def test_not_a_zip_is_one_problem():
    batch = gather_uploads([("photos.zip", b"this is not a zip at all"), ("ok.png", png(1))])
    assert names(batch) == ["ok.png"]
    assert len(batch.problems) == 1 and batch.problems[0].name == "photos.zip"
    assert "cannot be opened as a zip file" in batch.problems[0].message


def test_truncated_zip_is_one_problem():
    archive = make_zip([("a.png", png(1)), ("b.png", png(2))])
    batch = read_zip(archive[: len(archive) // 2], "cut.zip")
    assert batch.sources == [] and len(batch.problems) == 1


def test_empty_zip_file_is_one_problem():
    batch = read_zip(b"", "empty.zip")
    assert batch.sources == [] and len(batch.problems) == 1 and "empty" in batch.problems[0].message


def test_zip_with_no_members_is_an_empty_batch():
    batch = read_zip(make_zip([]), "nothing.zip")
    assert batch.sources == [] and batch.problems == []


def test_encrypted_member_is_reported_without_reading_it(count_inflations):
    archive = _patch_members(make_zip([("secret.png", png(1)), ("open.png", png(2))]), "secret.png", flag_bits=0x1)
    batch = read_zip(archive, "x.zip")
    assert names(batch) == ["open.png"]
    assert "encrypted" in problem_text(batch)
    assert count_inflations == ["open.png"]


def test_damaged_member_is_reported_and_the_rest_still_come_through():
    archive = bytearray(make_zip([("a.png", png(1)), ("b.png", png(2))], compression=zipfile.ZIP_STORED))
    pos = archive.find(b"\x89PNG")  # the first member's data: corrupt a byte, the CRC no longer matches
    archive[pos + 20] ^= 0xFF
    batch = read_zip(bytes(archive), "x.zip")
    assert names(batch) == ["b.png"]
    assert "damaged inside the archive" in problem_text(batch)


def test_duplicate_members_in_one_zip_are_deduplicated():
    data = png(1)
    batch = read_zip(make_zip([("cats/a.png", data), ("dogs/a-copy.png", data)]), "x.zip")
    assert [(s.name, s.label) for s in batch.sources] == [("cats/a.png", "cats")]
    assert "same content as cats/a.png" in problem_text(batch)


def test_zip_bomb_is_refused_from_its_declared_size_without_inflating(zeros_bomb, count_inflations):
    assert len(zeros_bomb) < 200_000  # 64 MiB inside
    batch = read_zip(zeros_bomb, "bomb.zip")  # default caps: 64 MiB > 20 MiB per file
    assert names(batch) == ["cats/ok.png"]
    assert "per-file limit" in problem_text(batch)
    assert count_inflations == ["cats/ok.png"]


def test_zip_bomb_is_refused_by_ratio_even_under_generous_size_caps(zeros_bomb, count_inflations):
    limits = UploadLimits(max_file_bytes=2**30, max_total_bytes=2**30, max_zip_uncompressed_bytes=2**31)
    batch = read_zip(zeros_bomb, "bomb.zip", limits)
    assert names(batch) == ["cats/ok.png"]
    assert "looks like a zip bomb" in problem_text(batch)
    assert count_inflations == ["cats/ok.png"]


def test_well_compressing_small_members_are_not_mistaken_for_bombs():
    flat = b"BM" + bytes(200_000)  # a flat-colour BMP-ish payload, ~1000:1, but under RATIO_CHECK_MIN_BYTES
    assert len(flat) < RATIO_CHECK_MIN_BYTES
    batch = read_zip(make_zip([("flat.bmp", flat)]), "x.zip")
    assert names(batch) == ["flat.bmp"] and batch.problems == []


def test_zip_lying_about_its_size_is_refused_and_never_inflated_past_the_cap():
    payload = bytes(4 * 2**20)
    archive = _patch_members(make_zip([("liar.bmp", payload), ("ok.png", png(1))]), "liar.bmp", file_size=1000)
    info = zipfile.ZipFile(io.BytesIO(archive)).getinfo("liar.bmp")
    assert info.file_size == 1000  # declared: small, so no declared-size rule fires
    batch = read_zip(archive, "liar.zip")
    assert names(batch) == ["ok.png"]
    assert "liar.bmp (in liar.zip)" in [p.name for p in batch.problems]


def test_reading_is_hard_capped_even_if_the_stream_yields_more_than_declared(monkeypatch):
    # A zip reader that trusted a lying header would keep producing bytes; the chunked counter stops it.
    archive = make_zip([("liar.bmp", b"x" * 100), ("ok.png", png(1))])
    real_open = zipfile.ZipFile.open
    produced = []

    class Endless(io.RawIOBase):
        def readable(self):
            return True

        def readinto(self, buf):
            produced.append(len(buf))
            buf[:] = b"\0" * len(buf)
            return len(buf)

    def fake_open(self, name, mode="r", *args, **kwargs):
        if getattr(name, "filename", name) == "liar.bmp":
            return Endless()
        return real_open(self, name, mode, *args, **kwargs)

    monkeypatch.setattr(zipfile.ZipFile, "open", fake_open)
    batch = read_zip(archive, "x.zip", UploadLimits(max_file_bytes=50_000))
    assert names(batch) == ["ok.png"]
    assert "skipped as a possible zip bomb" in problem_text(batch)
    assert sum(produced) <= 50_001


def test_zip_total_inflated_cap_stops_reading():
    rng = np.random.default_rng(0)
    members = [(f"cls/{i}.bmp", rng.bytes(40_000)) for i in range(5)]  # incompressible
    batch = read_zip(make_zip(members), "big.zip", UploadLimits(max_zip_uncompressed_bytes=100_000))
    assert names(batch) == ["cls/0.bmp", "cls/1.bmp"]
    assert len(batch.problems) == 1
    assert "reading stopped" in batch.problems[0].message and "3 entries not read" in batch.problems[0].message


def test_zip_member_count_cap_reads_only_the_first_entries():
    archive = make_zip([(f"{i}.png", png(i)) for i in range(10)])
    batch = read_zip(archive, "many.zip", UploadLimits(max_zip_members=4))
    assert names(batch) == ["0.png", "1.png", "2.png", "3.png"]
    assert "has 10 entries; only the first 4 were read" in problem_text(batch)


def test_zip_file_count_cap_stops_inflating_once_full(count_inflations):
    archive = make_zip([(f"c/{i}.png", png(i)) for i in range(5)])
    batch = gather_uploads([("set.zip", archive)], UploadLimits(max_files=2))
    assert names(batch) == ["c/0.png", "c/1.png"]
    assert "3 more images were not used" in problem_text(batch)
    assert count_inflations == ["c/0.png", "c/1.png"]


def test_zip_upload_over_the_total_cap_is_refused_unopened(count_inflations):
    archive = make_zip([("a.png", png(1))])
    batch = gather_uploads([("set.zip", archive)], UploadLimits(max_total_bytes=len(archive) - 1))
    assert batch.sources == [] and "limit for an archive" in problem_text(batch)
    assert count_inflations == []


def test_every_zip_member_decodes_to_the_original_pixels():
    datas = [png(i, 12) for i in range(3)]
    batch = read_zip(make_zip([(f"x/{i}.png", d) for i, d in enumerate(datas)]), "x.zip")
    for src, data in zip(batch.sources, datas, strict=False):
        assert src.data == data
        assert decode_image(src.data, src.name).pixels.shape == (12, 12, 3)


# --------------------------------------------------------------------------------------------
# local paths (command line)


@pytest.fixture
def dataset(tmp_path):
    root = tmp_path / "data"
    (root / "cats" / "young").mkdir(parents=True)
    (root / "dogs").mkdir()
    (root / ".cache").mkdir()
    (root / "cats" / "b.png").write_bytes(png(1))
    (root / "cats" / "a.png").write_bytes(png(2))
    (root / "cats" / "young" / "kitten.jpg").write_bytes(png(3))
    (root / "dogs" / "rex.webp").write_bytes(png(4))
    (root / "dogs" / "notes.txt").write_text("not an image")
    (root / ".cache" / "x.png").write_bytes(png(5))
    (root / ".hidden.png").write_bytes(png(6))
    (root / "top.png").write_bytes(png(7))
    return root


def test_folder_per_class_gives_first_level_labels_in_sorted_order(dataset):
    batch = gather_paths([dataset])
    rel = [(os.path.relpath(s.name, dataset), s.label) for s in batch.sources]
    assert rel == [  # top-down: a folder's own files (sorted), then its subfolders (sorted)
        ("top.png", None),
        (os.path.join("cats", "a.png"), "cats"),
        (os.path.join("cats", "b.png"), "cats"),
        (os.path.join("cats", "young", "kitten.jpg"), "cats"),
        (os.path.join("dogs", "rex.webp"), "dogs"),
    ]
    assert batch.problems == []  # notes.txt and hidden files are ignored silently
    assert all(s.digest == content_hash(s.data) for s in batch.sources)


def test_paths_are_names_as_given_or_found(dataset):
    given = str(dataset / "top.png")
    batch = gather_paths([given, str(dataset / "dogs")])
    assert names(batch) == [given, os.path.join(str(dataset / "dogs"), "rex.webp")]
    assert batch.labels == [None, None]  # images directly inside a given folder have no label


def test_gather_paths_is_deterministic(dataset):
    assert names(gather_paths([dataset])) == names(gather_paths([dataset]))


def test_missing_path_and_bad_extension_file_are_problems(dataset):
    batch = gather_paths([dataset / "nope", dataset / "dogs" / "notes.txt", dataset / "top.png"])
    assert names(batch) == [str(dataset / "top.png")]
    msgs = problem_text(batch)
    assert "no such file or folder" in msgs and "not an image file (.txt)" in msgs
    assert [p.name for p in batch.problems] == [str(dataset / "nope"), str(dataset / "dogs" / "notes.txt")]


def test_same_file_listed_twice_is_read_once(dataset):
    batch = gather_paths([dataset / "top.png", dataset / "top.png", dataset])
    assert [os.path.basename(n) for n in names(batch)].count("top.png") == 1
    assert any("listed more than once" in n for n in batch.notes)


def test_identical_files_under_different_paths_are_all_kept_with_a_note(tmp_path):
    data = png(1)
    (tmp_path / "a.png").write_bytes(data)
    (tmp_path / "b.png").write_bytes(data)
    batch = gather_paths([tmp_path])
    assert len(batch.sources) == 2 and batch.sources[0].digest == batch.sources[1].digest
    assert any("same content" in n for n in batch.notes)


def test_oversized_local_file_is_a_problem(tmp_path):
    (tmp_path / "big.bmp").write_bytes(bytes(5000))
    batch = gather_paths([tmp_path], max_file_bytes=1000)
    assert batch.sources == [] and "per-file limit" in problem_text(batch)


def test_problem_is_a_plain_dataclass():
    p = Failure("a.png", "broken", "file")
    assert (p.name, p.message) == ("a.png", "a.png: broken")
