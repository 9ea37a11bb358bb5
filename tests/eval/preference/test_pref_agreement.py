"""Fleiss' kappa and Krippendorff's alpha against published and hand-computed values."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from eval.preference import agreement, fleiss_kappa, krippendorff_alpha
from eval.preference.agreement import COLUMNS, alpha_from_counts

NAN = np.nan


def test_fleiss_kappa_published_example():
    # Fleiss (1971) as tabulated on Wikipedia's "Fleiss' kappa": 10 subjects, 14 raters, 5 categories.
    table = [
        [0, 0, 0, 0, 14], [0, 2, 6, 4, 2], [0, 0, 3, 5, 6], [0, 3, 9, 2, 0], [2, 2, 8, 1, 1],
        [7, 7, 0, 0, 0], [3, 2, 6, 3, 0], [2, 5, 3, 2, 2], [6, 5, 2, 1, 0], [0, 2, 2, 3, 7],
    ]  # fmt: skip
    assert fleiss_kappa(np.array(table)) == pytest.approx(0.20993, abs=1e-5)


def test_fleiss_kappa_by_hand():
    # Items (win, tie, loss): [3,0,0], [2,1,0], [0,0,3]. P_i = 1, (4+1-3)/6 = 1/3, 1 -> P_bar = 7/9.
    # Shares 5/9, 1/9, 3/9 -> P_e = 35/81; kappa = (63/81 - 35/81) / (46/81) = 28/46.
    assert fleiss_kappa(np.array([[3, 0, 0], [2, 1, 0], [0, 0, 3]])) == pytest.approx(28 / 46)
    # Items with one rating are ignored; unequal rater counts are allowed.
    assert fleiss_kappa(np.array([[3, 0, 0], [2, 1, 0], [0, 0, 3], [0, 1, 0]])) == pytest.approx(28 / 46)


def test_fleiss_kappa_undefined_cases():
    assert np.isnan(fleiss_kappa(np.array([[0, 3, 0], [0, 2, 0]])))  # every answer the same
    assert np.isnan(fleiss_kappa(np.array([[1, 0, 0], [0, 1, 0]])))  # nothing pairable
    with pytest.raises(ValueError, match="2-D"):
        fleiss_kappa(np.array([1, 2, 3]))
    with pytest.raises(ValueError, match="non-negative"):
        fleiss_kappa(np.array([[1, -1]]))


def test_krippendorff_published_example():
    # Krippendorff (2011), "Computing Krippendorff's Alpha-Reliability": 4 coders, 12 units, missing values.
    data = np.array([
        [1, 2, 3, 3, 2, 1, 4, 1, 2, NAN, NAN, NAN],
        [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, NAN, 3],
        [NAN, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, NAN],
        [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, NAN],
    ])  # fmt: skip
    assert krippendorff_alpha(data, "nominal") == pytest.approx(0.743, abs=5e-4)
    assert krippendorff_alpha(data, "ordinal") == pytest.approx(0.815, abs=5e-4)


def test_krippendorff_by_hand():
    # Two coders, units (1,1), (1,2), (3,3). Coincidences o11 = 2, o12 = o21 = 1, o33 = 2;
    # n1 = 3, n2 = 1, n3 = 2, n = 6.
    data = np.array([[1, 1, 3], [1, 2, 3]])
    # Nominal: n D_o = 2; n D_e = 2 (3*1 + 3*2 + 1*2) / 5 = 4.4 -> alpha = 1 - 2 / 4.4.
    assert krippendorff_alpha(data, "nominal") == pytest.approx(1 - 2 / 4.4)
    # Ordinal: delta_12 = 4/2 = 2, delta_13 = 6 - 5/2 = 3.5, delta_23 = 3 - 3/2 = 1.5.
    # n D_o = 2 * 2**2 = 8; n D_e = 2 (3*1*4 + 3*2*12.25 + 1*2*2.25) / 5 = 36 -> alpha = 1 - 8/36.
    assert krippendorff_alpha(data, "ordinal") == pytest.approx(1 - 8 / 36)


def test_krippendorff_edge_cases():
    assert krippendorff_alpha(np.array([[1, 2, 3], [1, 2, 3]])) == pytest.approx(1.0)
    assert np.isnan(krippendorff_alpha(np.array([[2, 2], [2, 2]])))  # no variation
    assert np.isnan(krippendorff_alpha(np.array([[1, NAN], [NAN, 2]])))  # nothing pairable
    with pytest.raises(ValueError, match="level must be 'nominal' or 'ordinal'"):
        alpha_from_counts(np.ones((2, 2)), np.array([0, 1]), "interval")
    with pytest.raises(ValueError, match="2-D"):
        krippendorff_alpha(np.array([1.0, 2.0]))


def test_agreement_is_measured_from_the_models_side(make_row):
    # Both raters prefer the model on each item, but saw it on different sides: perfect agreement.
    rows = []
    for i, result in enumerate(["win", "loss", "tie", "win"]):
        rows.append(make_row(result, pair=f"p{i}", rater="r1", model_left=True))
        rows.append(make_row(result, pair=f"p{i}", rater="r2", model_left=False))
    out = agreement(pd.DataFrame(rows))
    assert list(out.columns) == COLUMNS
    row = out.iloc[0]
    assert (row["n_items"], row["n_judgments"], row["raters_per_item"]) == (4, 8, 2.0)
    assert row["observed_agreement"] == 1.0
    assert row["fleiss_kappa"] == pytest.approx(1.0)
    assert row["krippendorff_alpha"] == pytest.approx(1.0)
    assert row["krippendorff_alpha_ordinal"] == pytest.approx(1.0)


def test_agreement_matches_the_formulas_on_a_table(make_row):
    # Items as (win, tie, loss) counts [3,0,0], [2,1,0], [0,0,3], plus an item rated once (ignored).
    results = {"p1": ["win"] * 3, "p2": ["win", "win", "tie"], "p3": ["loss"] * 3, "p4": ["win"]}
    rows = [make_row(r, pair=p, rater=f"r{k}") for p, rs in results.items() for k, r in enumerate(rs)]
    row = agreement(pd.DataFrame(rows)).iloc[0]
    assert row["n_items"] == 3 and row["fleiss_kappa"] == pytest.approx(28 / 46)
    assert row["observed_agreement"] == pytest.approx(7 / 9)
    # Same data as coders x units (values -1, 0, 1 from the model's side).
    data = np.array([[1, 1, -1], [1, 1, -1], [1, 0, -1]])
    assert row["krippendorff_alpha"] == pytest.approx(krippendorff_alpha(data, "nominal"))
    assert row["krippendorff_alpha_ordinal"] == pytest.approx(krippendorff_alpha(data, "ordinal"))


def test_all_ties_and_single_rater(make_row):
    ties = [make_row("tie", pair=f"p{i}", rater=f"r{k}") for i in range(3) for k in range(3)]
    row = agreement(pd.DataFrame(ties)).iloc[0]
    assert row["observed_agreement"] == 1.0
    assert np.isnan(row["fleiss_kappa"]) and np.isnan(row["krippendorff_alpha"])  # chance agreement is 1
    single = agreement(pd.DataFrame([make_row("win", pair=f"p{i}") for i in range(4)])).iloc[0]
    assert single["n_items"] == 0 and np.isnan(single["fleiss_kappa"]) and np.isnan(single["raters_per_item"])
