"""How much raters agree: Fleiss' kappa and Krippendorff's alpha (nominal and ordinal), per question.

Both compare the agreement observed among raters of the same item with the agreement expected if
answers were drawn at random from the overall answer frequencies: 1 is perfect agreement, 0 is
chance, below 0 systematic disagreement. Answers are compared from the model's side (win / tie /
loss, or the 5 points), because the app randomizes which side each rater saw the model on.

Both are written here, not taken from a library: statsmodels' `fleiss_kappa` requires every item to
have the same number of raters (an ongoing study rarely does) and would be a dependency for one
function; the `krippendorff` package has no ordinal metric over our signed scale and few tests.
The formulas follow Fleiss (1971) with per-item rater counts, and Krippendorff, "Computing
Krippendorff's Alpha-Reliability" (2011), through the coincidence matrix.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .schema import rated, validate_judgments

COLUMNS = [
    "question", "scale", "n_items", "n_judgments", "raters_per_item", "observed_agreement",
    "fleiss_kappa", "krippendorff_alpha", "krippendorff_alpha_ordinal",
]  # fmt: skip


def fleiss_kappa(counts: np.ndarray) -> float:
    """Fleiss' kappa from a table of counts.

    Args:
        counts: (N, K) number of raters who put item i in category k. Items may have different
            numbers of raters; items with fewer than 2 are ignored (they cannot agree or disagree).

    Returns:
        kappa = (P_bar - P_e) / (1 - P_e), with P_bar the mean over items of the share of agreeing
        rater pairs and P_e the sum of squared overall category shares. NaN when no item has two
        ratings or when every rating falls in one category (chance agreement is then 1: undefined).
    """
    counts = np.asarray(counts, dtype=np.float64)
    if counts.ndim != 2:
        raise ValueError(f"counts must be a 2-D (items, categories) table, got shape {counts.shape}.")
    if (counts < 0).any():
        raise ValueError("counts must be non-negative numbers of raters.")
    n_i = counts.sum(axis=1)
    counts, n_i = counts[n_i >= 2], n_i[n_i >= 2]
    if len(counts) == 0:
        return float("nan")
    p_i = ((counts**2).sum(axis=1) - n_i) / (n_i * (n_i - 1))
    p_bar = p_i.mean()
    p_j = counts.sum(axis=0) / n_i.sum()
    p_e = float((p_j**2).sum())
    if np.isclose(p_e, 1.0):
        return float("nan")
    return float((p_bar - p_e) / (1.0 - p_e))


def _coincidences(counts: np.ndarray) -> np.ndarray:
    """(V, V) coincidence matrix o_ck = sum_u (n_uc n_uk - [c = k] n_uc) / (m_u - 1) over pairable units."""
    m = counts.sum(axis=1)
    counts, m = counts[m >= 2], m[m >= 2]
    scaled = counts / (m - 1)[:, None]
    return scaled.T @ counts - np.diag(scaled.sum(axis=0))


def alpha_from_counts(counts: np.ndarray, values: np.ndarray, level: str = "nominal") -> float:
    """Krippendorff's alpha from per-unit value counts.

    Args:
        counts: (U, V) how many coders gave unit u the value values[v].
        values: (V,) the values, sorted ascending (their order defines the ordinal metric).
        level: "nominal" (any two different values disagree equally) or "ordinal" (disagreement
            grows with the number of answers that lie between the two values).

    Returns:
        alpha = 1 - D_o / D_e; NaN when no unit has two values or there is no variation at all.
    """
    if level not in ("nominal", "ordinal"):
        raise ValueError(f"level must be 'nominal' or 'ordinal', got {level!r}.")
    counts = np.asarray(counts, dtype=np.float64)
    o = _coincidences(counts)
    n_c = o.sum(axis=1)
    n = n_c.sum()
    if n < 2:
        return float("nan")
    if level == "nominal":
        delta2 = 1.0 - np.eye(len(values))
    else:
        # delta_ck = sum of n_g for g from c to k, minus half of n_c and of n_k (Krippendorff 2011).
        cum = np.cumsum(n_c)
        lo = np.minimum.outer(np.arange(len(values)), np.arange(len(values)))
        hi = np.maximum.outer(np.arange(len(values)), np.arange(len(values)))
        between = cum[hi] - cum[lo] + n_c[lo]
        delta2 = (between - (n_c[:, None] + n_c[None, :]) / 2.0) ** 2
    d_o = (o * delta2).sum()
    d_e = (np.outer(n_c, n_c) * delta2).sum() / (n - 1)
    if np.isclose(d_e, 0.0):
        return float("nan")
    return float(1.0 - d_o / d_e)


def krippendorff_alpha(reliability_data: np.ndarray, level: str = "nominal") -> float:
    """Krippendorff's alpha of reliability data in the usual layout.

    Args:
        reliability_data: (coders, units) values, NaN where a coder did not rate a unit.
        level: "nominal" or "ordinal".
    """
    data = np.asarray(reliability_data, dtype=np.float64)
    if data.ndim != 2:
        raise ValueError(
            f"reliability data must be 2-D (coders, units) with NaN for missing, got shape {data.shape}."
        )
    values = np.unique(data[np.isfinite(data)])
    counts = (
        np.stack([(data == v).sum(axis=0) for v in values], axis=1)
        if len(values)
        else np.zeros((data.shape[1], 0))
    )
    return alpha_from_counts(counts, values, level)


def item_counts(g: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """(items, values) counts of the model-side answers of one question's judgments, and the sorted values."""
    table = pd.crosstab([g["study"], g["pair_id"]], g["model_score"])
    return table.to_numpy(dtype=np.float64), table.columns.to_numpy()


def agreement(df: pd.DataFrame) -> pd.DataFrame:
    """Agreement among raters of the same item, per question (gold checks left out).

    Args:
        df: judgments (raw or validated).

    Returns:
        One row per question with columns `COLUMNS`: the scale, the number of items with at least
        two ratings and of their judgments, the mean raters per such item, the observed share of
        agreeing rater pairs, Fleiss' kappa, and Krippendorff's alpha (nominal and ordinal).
    """
    judged = rated(validate_judgments(df))
    rows = []
    for question, g in judged.groupby("question", sort=True):
        counts, values = item_counts(g)
        m = counts.sum(axis=1)
        pairable = m >= 2
        observed = float("nan")
        if pairable.any():
            c, n_i = counts[pairable], m[pairable]
            observed = float((((c**2).sum(axis=1) - n_i) / (n_i * (n_i - 1))).mean())
        rows.append({
            "question": question, "scale": g["scale"].iloc[0], "n_items": int(pairable.sum()),
            "n_judgments": int(m[pairable].sum()),
            "raters_per_item": float(m[pairable].mean()) if pairable.any() else float("nan"),
            "observed_agreement": observed, "fleiss_kappa": fleiss_kappa(counts),
            "krippendorff_alpha": alpha_from_counts(counts, values, "nominal"),
            "krippendorff_alpha_ordinal": alpha_from_counts(counts, values, "ordinal"),
        })  # fmt: skip
    return pd.DataFrame(rows, columns=COLUMNS)
