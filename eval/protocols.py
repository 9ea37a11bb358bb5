"""Named evaluation protocols: the metric sets and settings of the field's published tables.

`avgen eval --protocol NAME` picks the metrics and options of a protocol (flags and config keys
given explicitly still win) and records, with the report, every way the run departs from the
published protocol: pieces of it this platform does not implement, weights that were not found,
the missing face detector of LSE, a different dataset. A protocol run is therefore comparable
with the published table only where its deviation list says so.

The protocols (see docs/metrics.md for the tables they match):

- `av-benchmark`: MMAudio's av-benchmark (Cheng et al., 2025), the video-to-audio table on
  VGGSound's test set: 8 s clips, DeSync (Synchformer), IB-score (ImageBind), FD on PANNs and
  VGGish, CLAP score.
- `verse-bench`: the audio-video sync columns used on Verse-Bench (UniVerse-1, Wang et al., 2025):
  AV-Align, DeSync, ImageBind, and LSE-C/LSE-D for speech.
- `javisbench`: JavisBench (JavisDiT, Liu et al., 2025): FVD, FAD, CLIP and CLAP scores, the
  ImageBind audio-video score (AV-IB), AV-Align and DeSync.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["Protocol", "PROTOCOLS", "get_protocol", "protocol_deviations"]


@dataclass(frozen=True)
class Protocol:
    """A published evaluation protocol, as far as this platform implements it.

    Attributes:
        name: the `--protocol` value.
        table: the published table the numbers are meant to sit beside.
        dataset: the dataset that table evaluates (a run on other clips is a deviation).
        metrics: the metrics of ours it selects, in report order.
        options: `MetricOptions` fields it sets (durations, tolerances).
        not_implemented: columns of the published table with no counterpart here.
        notes: standing differences between our implementation and the protocol's.
    """

    name: str
    table: str
    dataset: str
    metrics: tuple[str, ...]
    options: dict[str, Any] = field(default_factory=dict)
    not_implemented: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()


PROTOCOLS: dict[str, Protocol] = {
    p.name: p
    for p in (
        Protocol(
            name="av-benchmark",
            table="MMAudio (Cheng et al., CVPR 2025), video-to-audio results on VGGSound test, computed with "
                  "hkchengrex/av-benchmark",
            dataset="VGGSound test set (about 15k 8 s clips)",
            metrics=("desync", "imagebind_score", "fad_panns", "fad_vggish", "clap_score"),
            options={"desync_duration": 8.0},
            not_implemented=("FD_PaSST", "KL_PANNs", "KL_PaSST", "IS (PANNs)", "MS-CLAP score"),
            notes=("fad_panns runs the 32 kHz CNN14 checkpoint; av-benchmark runs CNN14 at 16 kHz (64 mel, "
                   "50-8000 Hz), so FD_PANNs numbers are not comparable",
                   "clap_score uses a transformers ClapModel folder; av-benchmark uses LAION-CLAP's "
                   "music_speech_audioset_epoch_15_esc_89.98.pt (HTSAT-base)",
                   "IB-score is reported x 100 here (av-benchmark computes the raw cosine)"),
        ),
        Protocol(
            name="verse-bench",
            table="UniVerse-1 (Wang et al., 2025), joint audio-video generation on Verse-Bench",
            dataset="Verse-Bench (600 image-text prompts in three subsets)",
            metrics=("av_align", "desync", "imagebind_score", "lse_c", "lse_d"),
            options={"desync_duration": 8.0},
            not_implemented=("the benchmark's video and audio quality columns (aesthetics, motion, speech WER)",),
            notes=("the selection of sync columns follows our reading of the UniVerse-1 report and has not been "
                   "checked column by column against its table",
                   "LSE is meaningful on the speech subset only"),
        ),
        Protocol(
            name="javisbench",
            table="JavisDiT (Liu et al., 2025), text-to-audio-video results on JavisBench",
            dataset="JavisBench (10,140 prompts) or JavisBench-mini (1,000)",
            metrics=("fvd", "fad_vggish", "clip_score", "clap_score", "imagebind_score", "av_align", "desync"),
            options={"desync_duration": 8.0},
            not_implemented=("KVD", "TV-IB and TA-IB (ImageBind text-video and text-audio)", "CAVP score",
                             "AVHScore", "JavisScore"),
            notes=("JavisBench's FAD embedding and FVD settings were not checked against its code",
                   "DeSync needs clips of at least 4.8 s here; shorter clips are not scored"),
        ),
    )
}


def get_protocol(name: str) -> Protocol:
    """The protocol called `name` (an error listing the known ones otherwise)."""
    if name not in PROTOCOLS:
        raise ValueError(f"unknown protocol {name!r}; choose from {', '.join(PROTOCOLS)}.")
    return PROTOCOLS[name]


def protocol_deviations(protocol: Protocol, results: list[Any], reference: str | None) -> list[str]:
    """Every way a run of `protocol` departs from the published one.

    Args:
        protocol: the protocol.
        results: the run's `MetricResult`s.
        reference: the reference set's path or name (None: none given).
    """
    out = [f"not implemented here: {', '.join(protocol.not_implemented)}"] if protocol.not_implemented else []
    out += list(protocol.notes)
    out.append(f"dataset: the published table uses {protocol.dataset}; this run's clips are "
               f"{'the generated sets against ' + reference if reference else 'the generated sets, without a reference'}"
               " (equal only if they are that dataset)")
    seen: set[str] = set()
    for r in results:
        if r.metric not in protocol.metrics:
            continue
        note = r.extra.get("deviations") if r.ok else f"not computed: {r.reason}"
        line = f"{r.metric}: {note}" if note else ""
        if line and line not in seen:
            seen.add(line)
            out.append(line)
    return out
