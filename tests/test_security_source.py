"""No shipped code turns off a safety switch, not even in a comment.

The rules (README.md, "Security"): never ``safe_mode`` off, never call Keras's
``enable_unsafe_deserialization``, never lift Pillow's decompression-bomb limit, never let
Pillow load truncated images. This scans every ``.py`` file under ``extractor/``, ``pages/``,
``ui/``, ``benchmarks/`` and ``app.py`` (not ``tests/``, which must spell the strings out to test for
them, and not ``.venv``) and names ``file:line`` for every hit.

``extractor/audit.py`` refuses model configs that name ``enable_unsafe_deserialization``, so it
holds that name in a string; only the *call* form (name followed by ``(``) is forbidden.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

SCANNED = ("extractor", "pages", "ui", "benchmarks", "app.py")
SKIPPED_PARTS = frozenset({".venv", "venv", "tests", "__pycache__", "node_modules"})

# label -> pattern; any spacing, across line breaks too.
FORBIDDEN = {
    "safe_mode=False": re.compile(r"\bsafe_mode\s*=\s*False\b"),
    '"safe_mode": False': re.compile(r"""["']safe_mode["']\s*:\s*False\b"""),
    "enable_unsafe_deserialization(": re.compile(r"\benable_unsafe_deserialization\s*\("),
    "MAX_IMAGE_PIXELS = None": re.compile(r"\bMAX_IMAGE_PIXELS\s*=\s*None\b"),
    'setattr(..., "MAX_IMAGE_PIXELS", None)': re.compile(r"""["']MAX_IMAGE_PIXELS["']\s*,\s*None\b"""),
    "LOAD_TRUNCATED_IMAGES = True": re.compile(r"\bLOAD_TRUNCATED_IMAGES\s*=\s*True\b"),
    'setattr(..., "LOAD_TRUNCATED_IMAGES", True)': re.compile(r"""["']LOAD_TRUNCATED_IMAGES["']\s*,\s*True\b"""),
}


def scanned_files(root: Path) -> list[Path]:
    """Every .py file the rules apply to, under `root`, sorted."""
    files: set[Path] = set()
    for entry in SCANNED:
        path = root / entry
        if path.is_file() and path.suffix == ".py":
            files.add(path)
        elif path.is_dir():
            files.update(p for p in path.rglob("*.py")
                         if p.is_file() and not SKIPPED_PARTS.intersection(p.relative_to(root).parts))
    return sorted(files)


def find_forbidden(root: Path) -> list[str]:
    """``"path:line: label"`` for every forbidden pattern in the files under `root`."""
    hits = []
    for path in scanned_files(root):
        text = path.read_text(encoding="utf-8", errors="replace")
        for label, pattern in FORBIDDEN.items():
            for match in pattern.finditer(text):
                line = text.count("\n", 0, match.start()) + 1
                hits.append(f"{path.relative_to(root).as_posix()}:{line}: {label}")
    return sorted(hits)


def test_shipped_code_keeps_every_safety_switch_on():
    files = scanned_files(ROOT)
    assert ROOT / "extractor" / "audit.py" in files  # the scan really looks at the code
    hits = find_forbidden(ROOT)
    assert hits == [], "forbidden safety switches found:\n" + "\n".join(hits)


def test_audit_names_the_unsafe_switch_only_as_data():
    text = (ROOT / "extractor" / "audit.py").read_text(encoding="utf-8")
    assert "enable_unsafe_deserialization" in text
    assert not FORBIDDEN["enable_unsafe_deserialization("].search(text)


def test_planted_lines_are_found_with_file_and_line(tmp_path):
    def plant(rel: str, text: str) -> None:
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")

    plant("extractor/loader.py", "import keras\n\nm = keras.saving.load_model(p, safe_mode = False)\n")
    plant("extractor/sub/deep.py", "x = 1\nkeras.config.enable_unsafe_deserialization ()\n")
    plant("extractor/kwargs.py", 'opts = {"safe_mode": False}\nload(p,\n     safe_mode=\n     False)\n')
    plant("pages/1_upload.py", "from PIL import Image\nImage.MAX_IMAGE_PIXELS=None\n")
    plant("app.py", "from PIL import ImageFile\n# ok line\nImageFile.LOAD_TRUNCATED_IMAGES  =  True\n")
    plant("benchmarks/speed.py", 'setattr(Image, "MAX_IMAGE_PIXELS", None)\n')
    plant("ui/widgets.py", "ok = 1\nload(p, safe_mode=False)\n")
    # Not flagged: the audit's way of naming the switch, safe settings, and excluded places.
    plant("extractor/audit_like.py",
          '_TOKENS = {"enable_unsafe_deserialization": "would turn off safe mode"}\n'
          "load(p, safe_mode=True)\nImage.MAX_IMAGE_PIXELS = 50_000_000\nif safe_mode == False: pass\n")
    plant("tests/test_x.py", "safe_mode=False\n")
    plant(".venv/lib/site.py", "safe_mode=False\n")
    plant("extractor/.venv/lib/vendored.py", "safe_mode=False\n")
    plant("extractor/notes.txt", "safe_mode=False\n")

    assert find_forbidden(tmp_path) == sorted([
        "app.py:3: LOAD_TRUNCATED_IMAGES = True",
        "benchmarks/speed.py:1: setattr(..., \"MAX_IMAGE_PIXELS\", None)",
        "extractor/kwargs.py:1: \"safe_mode\": False",
        "extractor/kwargs.py:3: safe_mode=False",
        "extractor/loader.py:3: safe_mode=False",
        "extractor/sub/deep.py:2: enable_unsafe_deserialization(",
        "pages/1_upload.py:2: MAX_IMAGE_PIXELS = None",
        "ui/widgets.py:2: safe_mode=False",
    ])
