"""Chunk planning and cross-faded overlap-add."""

from __future__ import annotations

import pytest
import torch

from audio_codec.chunking import chunked_apply, crossfade_window, plan_chunks


@pytest.mark.parametrize(("total", "chunk", "overlap"), [(10, 10, 2), (11, 4, 1), (100, 30, 10), (31, 30, 5)])
def test_plan_covers_everything_with_equal_chunks(total: int, chunk: int, overlap: int) -> None:
    starts = plan_chunks(total, chunk, overlap)
    assert starts[0] == 0 and starts[-1] + chunk >= total
    covered = torch.zeros(total, dtype=torch.bool)
    for s in starts:
        covered[s:s + chunk] = True
        assert s + chunk <= max(total, chunk)
    assert covered.all()
    assert all(b - a <= chunk - overlap for a, b in zip(starts, starts[1:]))


def test_bad_overlap_is_refused() -> None:
    with pytest.raises(ValueError, match="overlap"):
        plan_chunks(10, 4, 4)


def test_window_is_positive_and_flat_in_the_middle() -> None:
    w = crossfade_window(10, 3)
    assert (w > 0).all() and (w[3:7] == 1).all() and w[0] < w[1] < w[2] < 1


@pytest.mark.parametrize("scale", [1, 4, -4])
def test_pointwise_function_is_reproduced_exactly(scale: int) -> None:
    torch.manual_seed(0)
    x = torch.randn(2, 3, 96)

    def fn(chunk: torch.Tensor) -> torch.Tensor:
        if scale > 0:
            return (2 * chunk).repeat_interleave(scale, dim=-1)
        return chunk.unfold(-1, -scale, -scale).mean(-1)

    out = chunked_apply(x, fn, in_chunk=24, in_overlap=8, scale=scale)
    assert torch.allclose(out, fn(x), atol=1e-6)
