"""`load_weights_file`: a good file loads; every kind of bad file gives one short reason."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from avtrain.weights_file import UnreadableWeightsError, load_weights_file


def test_a_weights_file_loads(tmp_path: Path) -> None:
    torch.save({"w": torch.ones(3), "config": {"n": 2}}, tmp_path / "ok.pt")
    state = load_weights_file(tmp_path / "ok.pt")
    assert state["config"] == {"n": 2} and torch.equal(state["w"], torch.ones(3))


class Custom:  # a class of the caller's: weights_only refuses to rebuild it (no pickled code runs)
    pass


def _truncated(tmp_path: Path) -> Path:
    torch.save({"w": torch.ones(1000)}, tmp_path / "full.pt")
    data = (tmp_path / "full.pt").read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[: len(data) // 2])
    return tmp_path / "cut.pt"


@pytest.mark.parametrize("make, reason", [
    (lambda d: (d / "t.pt").write_text("not a checkpoint") and d / "t.pt", "not a PyTorch file"),
    (lambda d: (d / "e.pt").write_bytes(b"") is not None and d / "e.pt", "empty or ends early"),
    (_truncated, "damaged or truncated"),
    (lambda d: torch.save({"c": Custom()}, d / "o.pt") or d / "o.pt", "objects other than tensors"),
])
def test_a_bad_file_gets_one_short_reason(tmp_path: Path, make, reason: str) -> None:
    path = make(tmp_path)
    with pytest.raises(UnreadableWeightsError) as info:
        load_weights_file(path)
    assert reason in info.value.reason and str(path) in str(info.value)
    assert "\n" not in str(info.value) and "weights_only" not in str(info.value)  # none of torch's advice
