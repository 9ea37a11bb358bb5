"""Fréchet distance against scipy, FD-infinity on Gaussians with a known limit, KID, bootstraps."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg

from eval.frechet import (
    GaussianStats,
    bootstrap_ci,
    bootstrap_fd,
    fd_infinity,
    frechet_distance,
    frechet_from_features,
    kid,
)


def _scipy_fd(a: np.ndarray, b: np.ndarray) -> float:
    """The textbook formula with scipy's sqrtm, as pytorch-fid computes it."""
    m1, m2 = a.mean(0), b.mean(0)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean = scipy.linalg.sqrtm(s1 @ s2).real
    return float(((m1 - m2) ** 2).sum() + np.trace(s1 + s2 - 2 * covmean))


@pytest.mark.parametrize(("n1", "n2", "d"), [(400, 300, 16), (60, 50, 32), (40, 45, 64)])
def test_fd_agrees_with_scipy(n1: int, n2: int, d: int) -> None:
    rng = np.random.default_rng(d)
    a = rng.normal(size=(n1, d)) @ rng.normal(size=(d, d)) * 0.3
    b = rng.normal(size=(n2, d)) * 1.2 + 0.3
    ours = frechet_from_features(a, b)  # sample-space route when n < d, eigensolver otherwise
    assert ours == pytest.approx(_scipy_fd(a, b), rel=1e-6, abs=1e-6)
    stats_a, stats_b = GaussianStats.from_features(a), GaussianStats.from_features(b)
    assert frechet_distance(stats_a.mu, stats_a.sigma, stats_b.mu, stats_b.sigma) == pytest.approx(ours, rel=1e-6)


def test_fd_is_zero_for_identical_sets_and_symmetric() -> None:
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(100, 8)), rng.normal(size=(80, 8)) + 1
    assert frechet_from_features(a, a) == pytest.approx(0.0, abs=1e-8)
    assert frechet_from_features(a, b) == pytest.approx(frechet_from_features(b, a), rel=1e-9)


def test_fd_of_known_gaussians() -> None:
    # N(0, I) vs N(mu, 4 I) in d dims: ||mu||^2 + d (1 + 4 - 2 * 2) = ||mu||^2 + d
    mu1, mu2 = np.zeros(5), np.full(5, 0.5)
    assert frechet_distance(mu1, np.eye(5), mu2, 4 * np.eye(5)) == pytest.approx(1.25 + 5)


def test_fd_infinity_recovers_the_limit() -> None:
    # N(0, I) vs N(0, 2 I) in 32 dims: FD = d (1 + 2 - 2 sqrt 2); finite samples overestimate it
    # by about a / n, which the extrapolation removes.
    d = 32
    true = d * (3 - 2 * np.sqrt(2))
    rng = np.random.default_rng(3)
    reference = rng.normal(size=(40000, d))
    generated = rng.normal(size=(3000, d)) * np.sqrt(2)
    full = frechet_from_features(reference, generated)
    inf = fd_infinity(reference, generated, min_n=300, steps=15, seed=0)
    assert full > true + 0.1  # the finite-sample bias is there ...
    assert abs(inf.value - true) < 0.05  # ... and the intercept removes it
    assert inf.slope > 0 and inf.r2 > 0.8 and len(inf.ns) == len(inf.fds) == 15


def test_fd_infinity_by_clip() -> None:
    rng = np.random.default_rng(2)
    gen = rng.normal(size=(60, 4))
    groups = np.repeat(np.arange(20), 3)  # 20 clips of 3 frames
    inf = fd_infinity(rng.normal(size=(500, 4)), gen, groups=groups, min_n=5, steps=5)
    assert max(inf.ns) == 20
    with pytest.raises(ValueError, match="at least 4"):
        fd_infinity(gen, gen[:3])


def test_kid_is_near_zero_for_one_distribution_and_positive_otherwise() -> None:
    rng = np.random.default_rng(3)
    a, b, c = rng.normal(size=(300, 8)), rng.normal(size=(300, 8)), rng.normal(size=(300, 8)) + 1
    same, _ = kid(a, b, subsets=10, subset_size=200)
    diff, _ = kid(a, c, subsets=10, subset_size=200)
    assert abs(same) < 0.05 and diff > 0.5


def test_bootstrap_intervals_cover_the_estimate() -> None:
    rng = np.random.default_rng(4)
    v = rng.normal(loc=2.0, size=200)
    lo, hi = bootstrap_ci(v, n_boot=500, seed=0)
    assert lo < v.mean() < hi and hi - lo < 0.5
    assert np.isnan(bootstrap_ci(np.array([1.0]))[0])
    a, b = rng.normal(size=(80, 4)), rng.normal(size=(80, 4)) + 0.5
    lo, hi = bootstrap_fd(a, b, n_boot=30, groups1=np.repeat(np.arange(40), 2))
    assert lo <= frechet_from_features(a, b) * 1.5 and hi >= frechet_from_features(a, b) * 0.5


@pytest.mark.parametrize(
    ("a", "b", "match"),
    [
        (np.zeros((1, 3)), np.zeros((5, 3)), "at least 2"),
        (np.zeros((5, 3)), np.zeros((5, 4)), "feature sizes differ"),
        (np.zeros(5), np.zeros((5, 3)), "2-D"),
        (np.full((5, 3), np.nan), np.zeros((5, 3)), "NaN"),
    ],
)
def test_bad_features_are_refused(a: np.ndarray, b: np.ndarray, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        frechet_from_features(a, b)
