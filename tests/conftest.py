"""Test-wide guards: no network, a private Keras cache, quiet TensorFlow.

Runs before any test module imports Keras, so KERAS_HOME set here is the one Keras reads.
Every attempt to open a non-loopback connection fails the test loudly: a test that tries to
download ImageNet weights or a data set is a bug, even where the machine happens to be online.
"""

from __future__ import annotations

import os
import socket
import tempfile
from pathlib import Path

import pytest

_KERAS_HOME = Path(tempfile.mkdtemp(prefix="layer-explorer-keras-home-"))
os.environ["KERAS_HOME"] = str(_KERAS_HOME)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
# OpenVINO conversions land in a per-run cache, never in the user's ~/.cache.
os.environ["LAYER_EXPLORER_OV_CACHE"] = tempfile.mkdtemp(prefix="layer-explorer-ov-cache-")

ROOT = Path(__file__).resolve().parent.parent


class NetworkAccessInTest(RuntimeError):
    """Raised when a test tries to reach beyond the loopback interface."""


_LOOPBACK = ("127.", "::1", "localhost")


def _is_loopback(address) -> bool:
    host = address[0] if isinstance(address, tuple) else address
    if isinstance(host, bytes):
        host = host.decode()
    return isinstance(host, str) and (host.startswith(_LOOPBACK) or host == "")


_real_connect = socket.socket.connect
_real_connect_ex = socket.socket.connect_ex
_real_getaddrinfo = socket.getaddrinfo


def _guarded_connect(self, address):
    if self.family in (socket.AF_INET, socket.AF_INET6) and not _is_loopback(address):
        raise NetworkAccessInTest(f"a test tried to connect to {address!r}; tests must never use the network")
    return _real_connect(self, address)


def _guarded_connect_ex(self, address):
    if self.family in (socket.AF_INET, socket.AF_INET6) and not _is_loopback(address):
        raise NetworkAccessInTest(f"a test tried to connect to {address!r}; tests must never use the network")
    return _real_connect_ex(self, address)


def _guarded_getaddrinfo(host, *args, **kwargs):
    if host is not None and not _is_loopback((host,)):
        raise NetworkAccessInTest(f"a test tried to resolve {host!r}; tests must never use the network")
    return _real_getaddrinfo(host, *args, **kwargs)


socket.socket.connect = _guarded_connect
socket.socket.connect_ex = _guarded_connect_ex
socket.getaddrinfo = _guarded_getaddrinfo


@pytest.fixture(autouse=True)
def _no_downloads(monkeypatch):
    """Keras's downloader fails loudly in every test; a file already in the test cache is served.

    Keras applications call ``get_file`` even for cached weights, so the stand-in returns the
    cached path when a test put the file there, and raises for anything that would download.
    """
    import keras

    def cached_only(fname=None, origin=None, *args, cache_subdir="datasets", cache_dir=None, **kwargs):
        path = Path(cache_dir or _KERAS_HOME) / cache_subdir / str(fname)
        if path.is_file():
            return str(path)
        raise NetworkAccessInTest(f"a test tried to download {fname!r} from {origin!r}")

    monkeypatch.setattr("keras.src.utils.file_utils.get_file", cached_only)
    monkeypatch.setattr(keras.utils, "get_file", cached_only)
    yield


@pytest.fixture(scope="session")
def keras_home() -> Path:
    """The private, initially empty Keras cache every test runs against."""
    return _KERAS_HOME


@pytest.fixture
def forward_counter(monkeypatch):
    """Counts every forward pass of every FeatureExtractor (cached ones included)."""
    from extractor import FeatureExtractor

    calls = {"n": 0}
    original = FeatureExtractor._run

    def counting(self, batch, *args, **kwargs):  # _run also takes the engine to use
        calls["n"] += 1
        return original(self, batch, *args, **kwargs)

    monkeypatch.setattr(FeatureExtractor, "_run", counting)
    return calls
