"""The side-by-side player: a bidirectional Streamlit component (see components/av_pair/index.html).

Why this design: `components.html` is one-way and its iframe cannot reach local files; Streamlit's
static serving only serves ./static next to the app script, to anyone, with no check of who asks.
Instead the page reads the two registered clips (by the sample ids of the rater's own assignment)
and passes their bytes as component arguments; the component plays them from blob: URLs and
reports back which clips were watched through. So nothing is ever served by path, it works
offline, and the watched state reaches Python, which enables the answers only after both clips
played once. Evaluation clips are short (MAX_MEDIA_BYTES caps them), so sending them whole is fine.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import streamlit.components.v1 as components

__all__ = ["PlayState", "av_pair"]

_COMPONENT = components.declare_component("av_pair", path=str(Path(__file__).parent / "components" / "av_pair"))


@dataclass(frozen=True)
class PlayState:
    """Which clips of the shown pair have been watched through once."""

    left: bool = False
    right: bool = False

    @property
    def both(self) -> bool:
        return self.left and self.right


def av_pair(left: bytes, right: bytes, *, item: int, key: str, left_mime: str = "video/mp4",
            right_mime: str = "video/mp4") -> PlayState:
    """Show two clips side by side with one play control and a sound selector.

    Args:
        left, right: the clips' file bytes (mp4 or webm).
        item: id of the assignment shown; a new id resets the player.
        key: widget key, unique per assignment.

    Returns:
        The watched state reported by the browser for this item (all False until it reports).
    """
    value = _COMPONENT(left=left, right=right, left_mime=left_mime, right_mime=right_mime, item=item,
                       key=key, default=None)
    if not isinstance(value, dict) or value.get("item") != item:
        return PlayState()
    return PlayState(left=bool(value.get("left")), right=bool(value.get("right")))
