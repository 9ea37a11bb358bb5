"""Figures of the attribute metric: a frame panel and per-attribute accuracy bars.

The panel has a row per prompt (the first `attr_panel_rows` paired prompts, in reference order)
and a column for the reference and each system; a cell is a strip of 4 frames spread over the
clip, with what the recognisers read under it (attributes the caption contradicts are listed in
red). The bars show each system's per-attribute accuracy with its interval, the shuffled-caption
floor (black tick) and the data ceiling (green tick).
"""

from __future__ import annotations

import html
import math
import textwrap
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only, never a window
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from eval.reader import EvalInputError, read_video  # noqa: E402

__all__ = ["attribute_panel", "attribute_bars", "attribute_section"]

_SHORT = {"colour": "col", "shape": "shp", "count": "n", "background": "bg", "family": "fam", "sound": "snd",
          "pitch": "pit"}


def _strip(path: str, start: float, end: float | None, n: int = 4) -> np.ndarray | None:
    """4 frames across the clip side by side (H, 4W, 3), None if the file cannot be read."""
    try:
        frames, _ = read_video(path, start=start, duration=None if end is None else end - start)
    except EvalInputError:
        return None
    idx = np.linspace(0, len(frames) - 1, n + 2)[1:-1].round().astype(int)  # skip the very first and last
    gap = np.full((frames.shape[1], 2, 3), 255, np.uint8)
    return np.concatenate([x for i in idx for x in (frames[i], gap)][:-1], axis=1)


def _describe(attrs: dict[str, Any]) -> tuple[str, str]:
    """(what was read, the attributes the caption contradicts)."""
    said = [f"{_SHORT.get(a, a)}: {' '.join(v['predicted']) or '-'}" for a, v in attrs.items()]
    wrong = [a for a, v in attrs.items() if v["correct"] < 1]
    return "\n".join(textwrap.wrap("; ".join(said), 44)), (f"wrong: {', '.join(wrong)}" if wrong else "all as captioned")


def attribute_panel(results: list[Any], reference: str | None, path: str | Path) -> Path | None:
    """Draw the frame panel of the `attributes` results of one report into `path` (PNG).

    Args:
        results: the ok `MetricResult`s of the attributes metric.
        reference: the reference row's system name (its clips are the first column).
        path: PNG file to write.

    Returns:
        The path, or None when no result has panel rows.
    """
    with_panel = [r for r in results if r.extra.get("panel")]
    if not with_panel:
        return None
    systems = [r for r in with_panel if r.system != reference]
    rows = (systems or with_panel)[0].extra["panel"]
    fig_h = 1.45 * len(rows) + 0.6
    fig, axes = plt.subplots(len(rows), len(systems) + 2, figsize=(3.2 + 3.6 * (len(systems) + 1), fig_h),
                             squeeze=False, gridspec_kw={"width_ratios": [0.9] + [1.0] * (len(systems) + 1)})
    for i, row in enumerate(rows):
        cap = axes[i, 0]
        cap.axis("off")
        cap.text(0, 0.5, "\n".join(textwrap.wrap(row["caption"], 42)), fontsize=6.5, va="center", ha="left")
        cells = [("reference", row["reference_path"], row["reference_start"], row["reference_end"],
                  row["reference_attributes"])]
        for r in systems:
            mine = next((x for x in r.extra["panel"] if x["reference_id"] == row["reference_id"]), None)
            cells.append((r.system, mine and mine["path"], mine and mine["start"], mine and mine["end"],
                          mine and mine["attributes"]))
        for j, (name, clip, start, end, attrs) in enumerate(cells):
            ax = axes[i, j + 1]
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(name, fontsize=9)
            strip = _strip(clip, start or 0.0, end) if clip else None
            if strip is None:
                ax.text(0.5, 0.5, "no clip" if not clip else "unreadable", ha="center", va="center", fontsize=7)
                continue
            ax.imshow(strip, interpolation="nearest")
            said, wrong = _describe(attrs or {})
            # one label under the strip: what was read, then the verdict; red where the caption disagrees
            ax.set_xlabel(f"{said}\n{wrong}", fontsize=5.5, labelpad=2,
                          color="#b00020" if wrong.startswith("wrong") else "#1b5e20")
    fig.tight_layout(h_pad=0.4, w_pad=0.3)
    out = Path(path)
    fig.savefig(out, dpi=130)
    plt.close(fig)
    return out


def attribute_bars(results: list[Any]) -> plt.Figure | None:
    """Per-attribute accuracy bars per row (interval as error bar), floor and ceiling ticks."""
    rows = [r for r in results if r.extra.get("per_attribute")]
    if not rows:
        return None
    attrs = list(rows[0].extra["per_attribute"])
    width = 0.8 / len(rows)
    fig, ax = plt.subplots(figsize=(max(6.0, 1.2 * len(attrs) * max(1, len(rows) / 2)), 3.4))
    for k, r in enumerate(rows):
        pa = r.extra["per_attribute"]
        x = np.arange(len(attrs)) - 0.4 + width * (k + 0.5)
        acc = np.array([pa.get(a, {}).get("accuracy", np.nan) for a in attrs], float)
        lo = np.array([pa.get(a, {}).get("ci_low", np.nan) for a in attrs], float)
        hi = np.array([pa.get(a, {}).get("ci_high", np.nan) for a in attrs], float)
        err = np.nan_to_num(np.abs(np.stack([acc - lo, hi - acc])))
        ax.bar(x, acc, width * 0.9, yerr=err, capsize=2, label=r.system)
        for a_i, a in enumerate(attrs):
            floor, ceil = pa.get(a, {}).get("floor"), pa.get(a, {}).get("ceiling")
            for v, colour in ((floor, "black"), (ceil, "#2e7d32")):
                if v is not None and math.isfinite(v):
                    ax.plot([x[a_i] - width * 0.45, x[a_i] + width * 0.45], [v, v], color=colour, lw=2)
    ax.set_xticks(range(len(attrs)), attrs)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("accuracy")
    ax.set_title("attributes: accuracy (bars, 95% CI), shuffled-caption floor (black), data ceiling (green)", fontsize=9)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return fig


def attribute_section(report: Any, out_dir: str | Path, png: Any) -> str:
    """HTML of the attribute figures for report.html; the panel is also written beside it.

    Args:
        report: the `EvalReport` (results of other metrics are ignored).
        out_dir: the report's folder (attributes_panel.png is written there).
        png: function turning a matplotlib figure into base64 PNG text (the report's own).
    """
    mine = [r for r in report.results if r.metric == "attributes" and r.ok]
    if not mine:
        return ""
    parts = ["<h2>Prompt attributes</h2><p>Accuracy of the attributes recognised in each clip against its "
             "caption, beside the same predictions against other clips' captions (floor) and the recognisers "
             "on the reference clips (ceiling).</p>"]
    fig = attribute_bars(mine)
    if fig is not None:
        parts.append(f"<figure><img src='data:image/png;base64,{png(fig)}'/></figure>")
    panel = attribute_panel(mine, report.reference, Path(out_dir) / "attributes_panel.png")
    if panel is not None:
        import base64

        b64 = base64.b64encode(panel.read_bytes()).decode("ascii")
        parts.append(f"<figure><img style='max-width:100%' src='data:image/png;base64,{b64}'/><figcaption>"
                     f"{html.escape(panel.name)}: first prompts; under each strip what was recognised "
                     "(col colour, shp shape, n count, bg background, fam family, snd sound, pit pitch)"
                     "</figcaption></figure>")
    return "".join(parts)
