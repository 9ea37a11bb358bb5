"""Chunk planning and cross-faded overlap-add."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

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


def test_window_skips_margins_before_the_ramps() -> None:
    w = crossfade_window(12, 2, skip_start=3, skip_end=1)
    assert (w[:3] == 0).all() and w[-1] == 0
    assert 0 < w[3] < w[4] < 1 and (w[5:9] == 1).all() and 1 > w[9] > w[10] > 0


@pytest.mark.parametrize("scale", [1, 4, -4])
def test_local_function_is_reproduced_exactly_when_the_margin_covers_its_reach(scale: int) -> None:
    torch.manual_seed(0)
    x = torch.randn(2, 3, 96)
    kernel = torch.randn(3, 3, 9)  # each output sees 4 inputs either side, zero-padded at the ends

    def fn(chunk: torch.Tensor) -> torch.Tensor:
        y = F.conv1d(chunk, kernel, padding=4)
        return y.repeat_interleave(scale, dim=-1) if scale > 0 else y.unfold(-1, -scale, -scale).mean(-1)

    exact = chunked_apply(x, fn, in_chunk=24, in_overlap=8, scale=scale, in_margin=4)
    assert torch.allclose(exact, fn(x), atol=1e-5)
    # Without the margin the zero padding at inner chunk edges leaks into the blend.
    blurred = chunked_apply(x, fn, in_chunk=24, in_overlap=8, scale=scale)
    assert not torch.allclose(blurred, fn(x), atol=1e-3)
    with pytest.raises(ValueError, match="2 \\* in_margin"):
        chunked_apply(x, fn, in_chunk=24, in_overlap=8, scale=scale, in_margin=5)
