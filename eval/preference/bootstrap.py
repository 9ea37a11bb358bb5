"""Two-way clustered bootstrap over prompts and raters.

Judgments of one prompt share that prompt's difficulty and judgments of one rater share that
rater's taste, so neither single judgments nor prompts alone are independent draws. The variance of
a statistic is estimated with the two-way cluster decomposition of Cameron, Gelbach and Miller
("Robust inference with multiway clustering", 2011):

    var = var_prompt + var_rater - var_cell

where each term is a one-way cluster bootstrap: resample prompts, or raters, or (prompt, rater)
cells with replacement. Resampling prompts and raters at once instead (Owen's pigeonhole
bootstrap) counts the judgment-level noise once per dimension; with few raters per prompt, as in
preference studies, that made 95% intervals cover 99% of the time in our simulations. When a
dimension has a single cluster the other one-way term is used alone, and when the difference falls
below the larger one-way term (small samples) that term is used. Each one-way variance gets the
small-sample factor G / (G - 1), and the interval is estimate +/- t * sigma with t from Student's
distribution with G - 1 degrees of freedom (G the smaller of the prompt and rater counts). scipy's and scikit-learn's bootstraps resample rows only, hence this module.

Legend: B replicates, U units (what a statistic counts: judgments or majority votes),
J judgments, P prompts, R raters, C cells.
"""

from __future__ import annotations

import contextlib
import functools
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from scipy.stats import t as student_t
from threadpoolctl import ThreadpoolController

# Largest (replicates x units) block of weights materialized at once: 2M float64 = 16 MB.
MAX_BLOCK = 2_000_000
SCHEMES = ("prompt", "rater", "cell")


def group_rng(seed: int, *key: str) -> np.random.Generator:
    """A generator that depends on the seed and on a group's name only.

    Seeding each group by its name (not by its position in the table) keeps a group's intervals
    unchanged when other models, baselines or questions are added to the study.
    """
    digest = [zlib.crc32(part.encode("utf-8")) for part in key]
    return np.random.default_rng(np.random.SeedSequence([seed, *digest]))


@functools.cache
def _threadpools() -> ThreadpoolController:
    # Scanning the loaded libraries takes ~10 ms; do it once per process.
    return ThreadpoolController()


def single_blas_thread() -> contextlib.AbstractContextManager:
    """Context in which BLAS uses one thread.

    The products and fits of the bootstrap are small: BLAS threads add only synchronization, which
    made the leaderboard ten times slower on a machine whose cores were busy with other work.
    """
    return _threadpools().limit(limits=1, user_api="blas")


def _codes(labels: np.ndarray) -> tuple[np.ndarray, int]:
    uniq, idx = np.unique(np.asarray(labels).astype(str), return_inverse=True)
    return idx.astype(np.int64).ravel(), len(uniq)


def _draw(n: int, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """(B, n) multiplicities: n draws with replacement out of n equally likely clusters.

    Counting drawn indices with one bincount is the same distribution as `rng.multinomial`, about
    three times faster for thousands of clusters (which multinomial draws one binomial at a time).
    """
    picks = rng.integers(0, n, size=(n_boot, n)) + n * np.arange(n_boot)[:, None]
    return np.bincount(picks.ravel(), minlength=n_boot * n).reshape(n_boot, n).astype(np.float64)


@dataclass(frozen=True)
class TwoWayBootstrap:
    """Cluster structure of a set of units, and replicate weights for each one-way scheme.

    A unit may hold several judgments (a majority vote of r raters). It belongs to one prompt; its
    rater weight in a replicate is the mean multiplicity of its raters; its cell is its prompt
    together with its set of raters.

    Attributes:
        unit_prompt: (U,) prompt code of each unit.
        unit_cell: (U,) cell code of each unit.
        rater_share: (U, R) sparse, 1/size for each judgment's rater (rows sum to 1).
        n_prompts, n_raters, n_cells: numbers of clusters.
    """

    unit_prompt: np.ndarray
    unit_cell: np.ndarray
    rater_share: sp.csr_matrix
    n_prompts: int
    n_raters: int
    n_cells: int

    @classmethod
    def from_judgments(cls, unit: np.ndarray, prompt: np.ndarray, rater: np.ndarray) -> TwoWayBootstrap:
        """Build from per-judgment unit index (0..U-1), prompt label and rater label (all (J,))."""
        unit = np.asarray(unit, dtype=np.int64)
        n_units = int(unit.max()) + 1
        prompt_code, n_prompts = _codes(prompt)
        rater_code, n_raters = _codes(rater)
        first = np.unique(unit, return_index=True)[1]  # every judgment of a unit shares its prompt
        size = np.bincount(unit, minlength=n_units)
        share = sp.csr_matrix((1.0 / size[unit], (unit, rater_code)), shape=(n_units, n_raters))
        # A unit's cell is its prompt together with its set of raters. The set is identified by a sum
        # of fixed random 40-bit keys of its raters (a collision is practically impossible).
        pattern = share.copy()
        pattern.sum_duplicates()
        pattern.data[:] = 1
        keys = np.random.default_rng(0).integers(0, 2**40, n_raters, dtype=np.int64)
        rater_set = pattern.astype(np.int64) @ keys  # (U,)
        _, cell_code = np.unique(
            np.stack([prompt_code[first], rater_set], axis=1), axis=0, return_inverse=True
        )
        cell_code = cell_code.ravel()
        n_cells = int(cell_code.max()) + 1
        return cls(prompt_code[first], cell_code, share, n_prompts, n_raters, n_cells)

    @property
    def n_units(self) -> int:
        return len(self.unit_prompt)

    @property
    def informative(self) -> bool:
        """False with one prompt and one rater: no resampling can then show any spread."""
        return self.n_prompts > 1 or self.n_raters > 1

    def weights(self, scheme: str, n_boot: int, rng: np.random.Generator) -> Iterator[np.ndarray]:
        """Yield (b, U) unit weights of consecutive blocks of replicates for one scheme."""
        if scheme not in SCHEMES:
            raise ValueError(f"scheme must be one of {SCHEMES}, got {scheme!r}.")
        step = max(1, MAX_BLOCK // max(1, self.n_units))
        for start in range(0, n_boot, step):
            b = min(step, n_boot - start)
            if scheme == "prompt":
                yield _draw(self.n_prompts, b, rng)[:, self.unit_prompt]
            elif scheme == "cell":
                yield _draw(self.n_cells, b, rng)[:, self.unit_cell]
            else:
                yield np.asarray((self.rater_share @ _draw(self.n_raters, b, rng).T).T)

    def sigma(
        self, statistic: Callable[[np.ndarray], np.ndarray], n_boot: int, rng: np.random.Generator
    ) -> np.ndarray:
        """Two-way clustered standard deviation of a weighted statistic.

        Args:
            statistic: maps (b, U) unit weights to (b, ...) replicate values (NaN when undefined,
                e.g. all weight on no unit).
            n_boot: replicates per one-way scheme.
            rng: the generator.

        Returns:
            (...) sigma, NaN where no resampling can estimate it.
        """
        var = {}
        clusters = {"prompt": self.n_prompts, "rater": self.n_raters, "cell": self.n_cells}
        for scheme in SCHEMES:
            reps = np.concatenate([statistic(w) for w in self.weights(scheme, n_boot, rng)])
            g = clusters[scheme]
            with np.errstate(invalid="ignore", divide="ignore"):
                # G / (G - 1): resampling G clusters underestimates the variance by (G - 1) / G.
                var[scheme] = np.nanvar(reps, axis=0, ddof=1) * (g / (g - 1) if g > 1 else np.nan)
        return np.sqrt(
            combine_variances(var["prompt"], var["rater"], var["cell"], self.n_prompts, self.n_raters)
        )

    def interval(
        self, estimate: np.ndarray | float, sigma: np.ndarray | float, confidence: float
    ) -> tuple[np.ndarray, np.ndarray]:
        """estimate -/+ q * sigma, q the two-sided quantile of Student's t with G - 1 degrees of freedom.

        G is the smaller number of clusters of the dimensions that count (Cameron, Gelbach and Miller
        recommend t(G - 1) over the normal: with 10 raters, q = 2.26 instead of 1.96 for 95%).
        """
        counts = [n for n in (self.n_prompts, self.n_raters) if n > 1]
        q = float(student_t.ppf(0.5 + confidence / 2.0, df=min(counts) - 1)) if counts else float("nan")
        return np.asarray(estimate) - q * np.asarray(sigma), np.asarray(estimate) + q * np.asarray(sigma)


def combine_variances(
    var_prompt: np.ndarray, var_rater: np.ndarray, var_cell: np.ndarray, n_prompts: int, n_raters: int
) -> np.ndarray:
    """Cameron-Gelbach-Miller two-way variance, with the fallbacks described in the module docstring."""
    var_prompt, var_rater, var_cell = (
        np.asarray(v, dtype=np.float64) for v in (var_prompt, var_rater, var_cell)
    )
    if n_prompts < 2 and n_raters < 2:
        return np.full(np.shape(var_prompt), np.nan)
    if n_raters < 2:
        return var_prompt
    if n_prompts < 2:
        return var_rater
    return np.maximum(var_prompt + var_rater - var_cell, np.maximum(var_prompt, var_rater))


def check_bootstrap_args(n_boot: int, confidence: float) -> None:
    """Raise ValueError with the fix when the bootstrap settings make no sense."""
    if not isinstance(n_boot, int | np.integer) or isinstance(n_boot, bool) or n_boot < 0:
        raise ValueError(f"n_boot must be an integer >= 0 (0 skips the bootstrap), got {n_boot!r}.")
    if 0 < n_boot < 20:
        raise ValueError(
            f"n_boot={n_boot} is too few replicates for an interval; use 0 (none) or >= 20 (1000 is usual)."
        )
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be between 0 and 1 (e.g. 0.95), got {confidence!r}.")
