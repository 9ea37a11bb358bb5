"""Fixtures of the flow-matching and sampler tests: the transformer tests' debug model and inputs."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent.parent / "dit"))

from dit_fixtures import make_inputs, randomize, small_config  # noqa: E402

from av_model.dit import AVDiT, DiTConfig  # noqa: E402


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """Tiny matmuls gain nothing from a second thread and lose much when the cores are shared."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def debug_model() -> AVDiT:
    torch.manual_seed(0)
    return AVDiT(small_config())


# Factories as fixtures, so test modules need no imports from test folders.
@pytest.fixture
def config_factory() -> Callable[..., DiTConfig]:
    return small_config


@pytest.fixture
def inputs_factory() -> Callable[..., dict[str, object]]:
    return make_inputs


@pytest.fixture
def randomizer() -> Callable[..., torch.nn.Module]:
    return randomize
