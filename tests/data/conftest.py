"""Fixtures for the data tests: a tiny synthetic dataset."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A synthetic dataset of 32x32, 1 s clips: 6 train, 2 val, 2 heldout. Returns the manifest."""
    from av_model.data.synthetic import SynthConfig, make_dataset

    out = tmp_path_factory.mktemp("synth")
    return make_dataset(out, SynthConfig(width=32, height=32, duration=1.0), 6, 2, 2, seed=1, workers=1, progress=False)
