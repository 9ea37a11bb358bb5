"""Sidecars, hashing and atomic writes: the small formats every package shares."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import pytest

import avio


def test_sidecar_round_trip_and_errors(tmp_path: Path) -> None:
    side = avio.sidecar_path(tmp_path / "a.mp4")
    assert side == tmp_path / "a.json"
    avio.write_sidecar(side, {"id": "a", "prompt": "a bell", "seed": 3})
    assert avio.read_sidecar(side) == {"id": "a", "prompt": "a bell", "seed": 3}
    side.write_text("{not json")
    with pytest.raises(avio.SidecarError, match="not valid JSON") as err:
        avio.read_sidecar(side)
    assert isinstance(err.value, avio.FormatError) and isinstance(err.value, ValueError) and err.value.path == side
    side.write_text("[1, 2]")
    with pytest.raises(avio.SidecarError, match="JSON object"):
        avio.read_sidecar(side)
    side.write_text('{"prompt": "' + "x" * (1 << 20) + '"}')
    with pytest.raises(avio.SidecarError, match="over 1 MB"):
        avio.read_sidecar(side)


def test_hashes_agree_with_hashlib(tmp_path: Path) -> None:
    f = tmp_path / "w.bin"
    f.write_bytes(b"abc" * 500_000)
    want = hashlib.sha256(f.read_bytes()).hexdigest()
    assert avio.sha256_file(f) == want == avio.sha256_file(f, memo=True) == avio.sha256_file(f, memo=True)
    h = hashlib.sha256(b"prefix")
    avio.update_with_file(h, f)
    assert h.hexdigest() == hashlib.sha256(b"prefix" + f.read_bytes()).hexdigest()


def test_atomic_writes_leave_the_old_file_or_the_new_one(tmp_path: Path) -> None:
    dest = tmp_path / "meta.json"
    avio.atomic_write_text(dest, "old")
    with pytest.raises(RuntimeError), avio.atomic_path(dest) as tmp:
        tmp.write_text("half")
        raise RuntimeError("killed")
    assert dest.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["meta.json"]
    avio.atomic_write_text(dest, "new")
    assert dest.read_text() == "new" and sorted(p.name for p in tmp_path.iterdir()) == ["meta.json"]


def test_avio_loads_without_torch() -> None:
    code = "import sys, avio, avio.normalize; print(sorted(m for m in sys.modules if m.split('.')[0] == 'torch'))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         cwd=Path(__file__).resolve().parents[2])
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "[]"
