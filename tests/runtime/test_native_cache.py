"""Where the ctypes binding keeps the compiled C runtime (runtime/native.py): folders readable by every
user, a private temp folder when the home is not writable, and one-line errors naming DIRECT_EDGE_CACHE."""

from __future__ import annotations

import ctypes
import os
import stat
import sys
import tempfile

import pytest

from direct_edge.runtime import native

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX modes and uids")


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.fixture
def no_home(tmp_path, monkeypatch):
    """A home that cannot be created (it lies under a regular file, so even root cannot), no
    DIRECT_EDGE_CACHE, and a temp directory of its own."""
    (tmp_path / "file").write_text("")
    monkeypatch.setenv("HOME", str(tmp_path / "file" / "home"))
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.delenv(native.CACHE_VARIABLE, raising=False)
    (tmp_path / "tmp").mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    return tmp_path


def test_cache_folders_are_0755_and_the_library_0644_whatever_the_umask(tmp_path, monkeypatch):
    cache = tmp_path / "shared" / "cache"
    monkeypatch.setenv(native.CACHE_VARIABLE, str(cache))
    old = os.umask(0o077)
    try:
        try:
            library = native.build_library(cflags=native.PORTABLE_CFLAGS)
        except native.NativeUnavailable as exc:
            pytest.skip(f"C runtime unavailable: {str(exc).splitlines()[0]}")
    finally:
        os.umask(old)
    assert library.parent == cache
    assert (mode(tmp_path / "shared"), mode(cache), mode(library)) == (0o755, 0o755, 0o644)
    ctypes.CDLL(str(library))  # still loads
    assert native.build_library(cflags=native.PORTABLE_CFLAGS) == library  # reused, not rebuilt


def test_without_a_writable_home_the_cache_is_a_private_temp_folder(no_home):
    folder = native._cache_dir()
    assert folder == no_home / "tmp" / f"direct-edge-{os.getuid()}"
    assert folder.is_dir() and mode(folder) == 0o755
    assert native._cache_dir() == folder  # the second call reuses it


def test_a_temp_folder_others_can_write_is_refused_with_a_hint(no_home):
    planted = no_home / "tmp" / f"direct-edge-{os.getuid()}"
    planted.mkdir()
    planted.chmod(0o777)
    with pytest.raises(native.NativeUnavailable) as info:
        native._cache_dir()
    message = str(info.value)
    assert "\n" not in message
    assert "owned and writable only by this user" in message
    assert message.endswith("set DIRECT_EDGE_CACHE to a writable folder")


def test_an_unusable_cache_variable_is_one_line_naming_it(tmp_path, monkeypatch):
    (tmp_path / "file").write_text("")
    monkeypatch.setenv(native.CACHE_VARIABLE, str(tmp_path / "file" / "cache"))
    with pytest.raises(native.NativeUnavailable) as info:
        native._cache_dir()
    message = str(info.value)
    assert "\n" not in message
    assert f"{tmp_path / 'file'}: Not a directory" in message
    assert message.endswith("set DIRECT_EDGE_CACHE to a writable folder")
