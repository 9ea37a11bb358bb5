"""Claims that can fail: a system is credited with sync only where it clears its mismatched floor."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from avio import write_clip
from eval.claims import Claim, attribute_claims, conditioning_claims, event_claims, load_report
from eval.runner import EvalConfig, evaluate
from eval.testing import dashing_clip

N = 12


def _write(folder: Path, seed0: int, *, silent: bool = False) -> Path:
    for i in range(N):
        clip = dashing_clip(seed0 + i, duration=2.0, min_event_gap=0.3)
        audio = np.zeros_like(clip.audio) if silent else clip.audio
        write_clip(folder / f"clip{i}.mp4", clip.frames, clip.fps, audio, clip.sample_rate)
        (folder / f"clip{i}.json").write_text(json.dumps({"id": f"clip{i}", "prompt": f"scene {i}"}))
    return folder


@pytest.fixture(scope="module")
def v2a_report(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("claims")
    rows = []
    for i in range(N):
        clip = dashing_clip(i, duration=2.0, min_event_gap=0.3)
        write_clip(root / "ref" / f"clip{i}.mp4", clip.frames, clip.fps, clip.audio, clip.sample_rate)
        rows.append({"id": f"clip{i}", "path": f"ref/clip{i}.mp4", "caption": f"scene {i}",
                     "events": [{"time": t, "kind": k, "obj": 0} for t, k in zip(clip.events, clip.kinds)]})
    (root / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    systems = {
        "in_sync": _write(root / "in_sync", 0),
        # The sound of another clip: what a model whose video input is replaced by another clip's makes.
        "other_video": _write(root / "other_video", 1),
        # No onsets at all: what the untrained model (a zero velocity head) decodes.
        "untrained": _write(root / "untrained", 0, silent=True),
    }
    cfg = EvalConfig(generated=[f"{k}={v}" for k, v in systems.items()], reference=str(root / "manifest.jsonl"),
                     metrics=["events"], out=None, progress=False,
                     options={"task": "v2a", "pair_by": "id", "n_boot": 300})
    report = evaluate(cfg).to_dict()
    path = root / "report.json"
    path.write_text(json.dumps(report))
    return load_report(path)


def test_only_the_system_in_sync_is_credited(v2a_report: dict) -> None:
    claims = {(c.system, c.claim.rsplit("@", 1)[1]): c for c in event_claims(v2a_report, "v2a")}
    for tol in ("50 ms", "100 ms"):
        assert claims[("in_sync", tol)].verdict == "learned", claims[("in_sync", tol)]
        assert claims[("other_video", tol)].verdict.startswith("not shown"), claims[("other_video", tol)]
        assert claims[("untrained", tol)].verdict.startswith("not shown"), claims[("untrained", tol)]
        # The data's own figure is the ceiling beside each claim.
        assert claims[("in_sync", tol)].ceiling == pytest.approx(claims[("in_sync", tol)].figure, abs=0.05)


def test_a_claim_without_intervals_is_not_shown() -> None:
    c = Claim("v2a", "s", "x", 0.9, (float("nan"), float("nan")), 0.1, (0.05, 0.15))
    assert not c.shown and "too few clips" in c.verdict


def test_attribute_and_conditioning_claims_read_their_rows() -> None:
    report = {"reference": "ref", "results": [
        {"metric": "attributes", "status": "ok", "system": "moe", "extra": {"per_attribute": {
            "colour": {"accuracy": 0.8, "ci_low": 0.7, "ci_high": 0.9, "floor": 0.2, "floor_ci_low": 0.1,
                       "floor_ci_high": 0.3},
            "shape": {"accuracy": 0.3, "ci_low": 0.2, "ci_high": 0.4, "floor": 0.25, "floor_ci_low": 0.2,
                      "floor_ci_high": 0.3}}}},
        {"metric": "attributes", "status": "ok", "system": "ref", "extra": {"per_attribute": {
            "colour": {"accuracy": 1.0}}}},
    ]}
    by = {c.claim.split(": ")[1].split(" ")[0]: c for c in attribute_claims(report, "t2av")}
    assert by["colour"].shown and by["colour"].ceiling == 1.0
    assert not by["shape"].shown
    gaps = conditioning_claims([
        {"system": "moe", "task": "v2a", "modality": "audio", "t": 0.9, "gap": 0.3, "gap_ci_low": 0.1, "gap_ci_high": 0.5},
        {"system": "moe", "task": "v2a", "modality": "audio", "t": 0.3, "gap": 0.01, "gap_ci_low": -0.02, "gap_ci_high": 0.04},
    ])
    assert [g.shown for g in gaps] == [True, False]
    assert len(conditioning_claims(gaps and [], t=0.9)) == 0


def test_load_report_says_what_is_wrong(tmp_path: Path) -> None:
    bad = tmp_path / "report.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="avgen eval --out"):
        load_report(bad)
    bad.write_text("[]")
    with pytest.raises(ValueError, match="no 'results' list"):
        load_report(bad)
