"""Fréchet distance, its 1/n extrapolation (FD-infinity), KID and bootstrap intervals.

All arithmetic is float64. The matrix square root term Tr((S_r S_g)^(1/2)) is computed without
`scipy.linalg.sqrtm` (which can return complex values and is slow on 2048-d features):

- when there are fewer samples than dimensions, Tr((S_r S_g)^(1/2)) is the nuclear norm of the
  cross matrix A B^T / sqrt((n_r - 1)(n_g - 1)) of the centred feature matrices A (n_r, D) and
  B (n_g, D): the non-zero eigenvalues of S_r S_g are the squared singular values of that matrix;
- otherwise it is sum(sqrt(eigvalsh(R S_g R))) with R = S_r^(1/2) from a symmetric eigensolver:
  R S_g R is symmetric positive semi-definite and similar to S_r S_g.

Both are exact (no iteration) and real by construction; tiny negative eigenvalues from round-off
are clipped to zero. The test suite checks the result against scipy's `sqrtm` formula.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = [
    "GaussianStats",
    "frechet_distance",
    "frechet_from_features",
    "FDInfinity",
    "fd_infinity",
    "kid",
    "bootstrap_ci",
    "bootstrap_fd",
]


def _features(x: np.ndarray, name: str, min_rows: int = 2) -> np.ndarray:
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array (N samples, D features), got shape {arr.shape}.")
    if arr.shape[0] < min_rows:
        raise ValueError(
            f"{name} has {arr.shape[0]} samples; a covariance needs at least {min_rows}. Evaluate more clips."
        )
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or infinite values; the feature extractor or its input is broken.")
    return arr


@dataclass(frozen=True)
class GaussianStats:
    """Mean (D,) and covariance (D, D) of a feature set, with the sample count."""

    mu: np.ndarray
    sigma: np.ndarray
    n: int

    @classmethod
    def from_features(cls, feats: np.ndarray) -> GaussianStats:
        """Statistics of features (N, D), unbiased covariance (divides by N - 1)."""
        x = _features(feats, "features")
        return cls(mu=x.mean(axis=0), sigma=np.cov(x, rowvar=False).reshape(x.shape[1], x.shape[1]), n=x.shape[0])


def _sym_sqrt(s: np.ndarray) -> np.ndarray:
    """Square root of a symmetric positive semi-definite matrix by eigendecomposition."""
    w, v = np.linalg.eigh((s + s.T) / 2)
    return (v * np.sqrt(np.clip(w, 0, None))) @ v.T


def _trace_sqrt_product(sigma1: np.ndarray, sigma2: np.ndarray) -> float:
    """Tr((S1 S2)^(1/2)) for symmetric PSD S1, S2 (D, D)."""
    r = _sym_sqrt(sigma1)
    m = r @ sigma2 @ r
    return float(np.sqrt(np.clip(np.linalg.eigvalsh((m + m.T) / 2), 0, None)).sum())


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """||mu1 - mu2||^2 + Tr(S1 + S2 - 2 (S1 S2)^(1/2)) between two Gaussians.

    Args:
        mu1, mu2: means (D,).
        sigma1, sigma2: covariances (D, D), symmetric positive semi-definite.

    Returns:
        The distance (>= 0 up to round-off; clipped at 0).
    """
    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    s1, s2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    d = mu1.shape[0]
    if mu2.shape != (d,) or s1.shape != (d, d) or s2.shape != (d, d):
        raise ValueError(
            f"shapes do not agree: mu1 {mu1.shape}, sigma1 {s1.shape}, mu2 {mu2.shape}, sigma2 {s2.shape}; "
            "both sets must come from the same feature extractor."
        )
    diff = mu1 - mu2
    value = diff @ diff + np.trace(s1) + np.trace(s2) - 2.0 * _trace_sqrt_product(s1, s2)
    return float(max(value, 0.0))


def frechet_from_features(feats1: np.ndarray, feats2: np.ndarray) -> float:
    """Fréchet distance between the Gaussians fitted to features (N1, D) and (N2, D).

    Chooses the cheaper exact route: the sample-space nuclear norm when min(N1, N2) < D, the
    D x D eigensolver otherwise.
    """
    a = _features(feats1, "first feature set")
    b = _features(feats2, "second feature set")
    if a.shape[1] != b.shape[1]:
        raise ValueError(
            f"feature sizes differ ({a.shape[1]} vs {b.shape[1]}); both sets must use the same extractor."
        )
    n1, n2, d = a.shape[0], b.shape[0], a.shape[1]
    mu1, mu2 = a.mean(axis=0), b.mean(axis=0)
    if min(n1, n2) >= d:
        return frechet_distance(mu1, np.cov(a, rowvar=False).reshape(d, d), mu2, np.cov(b, rowvar=False).reshape(d, d))
    ac, bc = a - mu1, b - mu2
    cross = ac @ bc.T  # (N1, N2)
    nuclear = float(np.linalg.svd(cross, compute_uv=False).sum())
    diff = mu1 - mu2
    value = (diff @ diff + (ac * ac).sum() / (n1 - 1) + (bc * bc).sum() / (n2 - 1)
             - 2.0 * nuclear / math.sqrt((n1 - 1) * (n2 - 1)))
    return float(max(value, 0.0))


@dataclass(frozen=True)
class FDInfinity:
    """The Fréchet distance extrapolated to infinitely many generated samples.

    Attributes:
        value: intercept b of the fit FD(n) = a / n + b (fadtk's FAD-infinity).
        slope: a.
        r2: coefficient of determination of the fit.
        ns: the subset sizes used.
        fds: the Fréchet distance at each size.
    """

    value: float
    slope: float
    r2: float
    ns: list[int]
    fds: list[float]


def fd_infinity(reference: np.ndarray, generated: np.ndarray, *, groups: np.ndarray | None = None,
                min_n: int = 500, steps: int = 25, seed: int = 0) -> FDInfinity:
    """FD-infinity as in fadtk: FD of random generated subsets of n in linspace(min_n, N, steps)
    against the full reference set, then a least-squares line in 1/n; the intercept is the value.

    The Fréchet distance of a finite sample is biased upwards by about a/n; the intercept removes
    that bias, so sets of different sizes become comparable.

    Args:
        reference: (N_r, D) reference features (used whole).
        generated: (N, D) generated features (subsampled without replacement).
        groups: (N,) clip id of each generated row; when given, whole clips are subsampled and
            n counts clips (rows of one clip are not independent samples).
        min_n: smallest subset (lowered to N // 2 for small sets; at least 2).
        steps: number of subset sizes (fewer when N is small).
        seed: random seed of the subsets.
    """
    ref = _features(reference, "reference features")
    gen = _features(generated, "generated features", min_rows=2)
    units = _group_index(gen.shape[0], groups, "groups")
    n = len(units)
    if n < 4:
        raise ValueError(f"FD-infinity needs at least 4 generated clips, got {n}.")
    lo = max(2, min(min_n, n // 2))
    ns = sorted({int(round(v)) for v in np.linspace(lo, n, max(2, steps))})
    if len(ns) < 2:
        raise ValueError(f"FD-infinity needs at least two subset sizes; {n} generated samples are too few.")
    rng = np.random.default_rng(seed)
    d = ref.shape[1]
    ref_mu, ref_sigma = ref.mean(axis=0), np.cov(ref, rowvar=False).reshape(d, d)  # once, not per subset
    fds = []
    for k in ns:
        rows = np.concatenate([units[i] for i in rng.choice(n, size=k, replace=False)])
        sub = gen[rows]
        if min(ref.shape[0], sub.shape[0]) > d:
            fds.append(frechet_distance(ref_mu, ref_sigma, sub.mean(axis=0), np.cov(sub, rowvar=False).reshape(d, d)))
        else:
            fds.append(frechet_from_features(ref, sub))
    x = 1.0 / np.asarray(ns, np.float64)
    y = np.asarray(fds)
    slope, intercept = np.polyfit(x, y, 1)
    pred = slope * x + intercept
    ss_tot = float(((y - y.mean()) ** 2).sum())
    r2 = 1.0 - float(((y - pred) ** 2).sum()) / ss_tot if ss_tot > 0 else 1.0
    return FDInfinity(value=float(intercept), slope=float(slope), r2=r2, ns=ns, fds=[float(v) for v in fds])


def kid(feats1: np.ndarray, feats2: np.ndarray, *, subsets: int = 100, subset_size: int = 1000,
        seed: int = 0) -> tuple[float, float]:
    """Kernel Inception Distance: unbiased MMD^2 with the kernel (x.y / D + 1)^3, averaged over
    random subsets (Binkowski et al. 2018).

    Args:
        feats1, feats2: (N1, D), (N2, D).
        subsets: number of random subsets.
        subset_size: samples per subset (lowered to min(N1, N2)).
        seed: random seed.

    Returns:
        (mean, standard deviation over subsets).
    """
    a = _features(feats1, "first feature set")
    b = _features(feats2, "second feature set")
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"feature sizes differ ({a.shape[1]} vs {b.shape[1]}).")
    d = a.shape[1]
    m = min(subset_size, a.shape[0], b.shape[0])
    rng = np.random.default_rng(seed)
    vals = np.empty(subsets)
    for i in range(subsets):
        x = a[rng.choice(a.shape[0], m, replace=False)]
        y = b[rng.choice(b.shape[0], m, replace=False)]
        kxx = (x @ x.T / d + 1) ** 3
        kyy = (y @ y.T / d + 1) ** 3
        kxy = (x @ y.T / d + 1) ** 3
        vals[i] = ((kxx.sum() - np.trace(kxx)) + (kyy.sum() - np.trace(kyy))) / (m * (m - 1)) - 2 * kxy.mean()
    return float(vals.mean()), float(vals.std())


def bootstrap_ci(values: np.ndarray, *, n_boot: int = 1000, level: float = 0.95, seed: int = 0,
                 statistic=np.mean) -> tuple[float, float]:
    """Percentile bootstrap interval of `statistic` over the samples (N,) (NaNs are dropped).

    Returns (low, high); (nan, nan) with fewer than two finite values.
    """
    if not 0 < level < 1:
        raise ValueError(f"level must lie in (0, 1), got {level}.")
    v = np.asarray(values, np.float64)
    v = v[np.isfinite(v)]
    if v.size < 2 or n_boot < 1:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, v.size, size=(n_boot, v.size))
    stats = np.array([statistic(v[row]) for row in idx]) if statistic is not np.mean else v[idx].mean(axis=1)
    alpha = (1 - level) / 2
    lo, hi = np.quantile(stats, [alpha, 1 - alpha])
    return float(lo), float(hi)


def _group_index(n: int, groups: np.ndarray | None, name: str) -> list[np.ndarray]:
    """Row indices of each group (clip); every row its own group when `groups` is None."""
    if groups is None:
        return [np.array([i]) for i in range(n)]
    g = np.asarray(groups).reshape(-1)
    if g.shape[0] != n:
        raise ValueError(f"{name} has {g.shape[0]} entries for {n} feature rows.")
    _, inverse = np.unique(g, return_inverse=True)
    order = np.argsort(inverse, kind="stable")
    return np.split(order, np.flatnonzero(np.diff(inverse[order])) + 1)


def bootstrap_fd(feats1: np.ndarray, feats2: np.ndarray, *, groups1: np.ndarray | None = None,
                 groups2: np.ndarray | None = None, n_boot: int = 100, level: float = 0.95,
                 seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of the Fréchet distance, resampling both sets.

    Args:
        feats1, feats2: (N1, D), (N2, D) features.
        groups1, groups2: (N1,), (N2,) clip ids of the rows when a clip gives several rows (audio
            frames); whole clips are resampled, since frames of one clip are not independent.
        n_boot: resamples.
        level: coverage of the interval.
        seed: random seed.

    Returns:
        (low, high).
    """
    a = _features(feats1, "first feature set")
    b = _features(feats2, "second feature set")
    if n_boot < 1:
        return float("nan"), float("nan")
    ga, gb = _group_index(a.shape[0], groups1, "groups1"), _group_index(b.shape[0], groups2, "groups2")
    rng = np.random.default_rng(seed)
    vals = []
    for _ in range(n_boot):
        ia = np.concatenate([ga[i] for i in rng.integers(0, len(ga), len(ga))])
        ib = np.concatenate([gb[i] for i in rng.integers(0, len(gb), len(gb))])
        if ia.size < 2 or ib.size < 2:
            continue
        vals.append(frechet_from_features(a[ia], b[ib]))
    if not vals:
        return float("nan"), float("nan")
    alpha = (1 - level) / 2
    lo, hi = np.quantile(vals, [alpha, 1 - alpha])
    return float(lo), float(hi)
