"""Scene families of the synthetic dataset: parameters, motion, events, sounds and captions.

Each family has a `_sample_<family>` that draws every random choice into a JSON-serializable
parameter dict (event times included, on the audio sample grid), and a `_build_<family>` that
turns those parameters into sprites with motion paths, sounds and a caption. Captions are
functions of the parameters alone, so a manifest row always describes its clip exactly.

Held-out rule (the `heldout` split tests generalisation to unseen combinations): a clip belongs
to `heldout` exactly when one of its objects has a colour x family pair in
`HELDOUT_COLOUR_FAMILY` or a shape x sound pair in `HELDOUT_SHAPE_SOUND` (the sound is the
material for impacts and ticks, the timbre for flashes). `train` and `val` never contain them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from av_model.data.synth_draw import SHAPES
from av_model.data.synth_sounds import MATERIALS, SIZE_PITCH, TIMBRES, impact, tone

if TYPE_CHECKING:
    from av_model.data.synthetic import SynthConfig

__all__ = [
    "BACKGROUNDS",
    "COLOURS",
    "FAMILIES",
    "HELDOUT_COLOUR_FAMILY",
    "HELDOUT_SHAPE_SOUND",
    "SIZES",
    "Event",
    "Scene",
    "Sprite",
    "build_scene",
    "heldout_pairs",
    "sample_params",
]

FAMILIES = ("bounce", "wall", "flash", "pendulum", "multi")
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (225, 45, 45),
    "green": (50, 195, 70),
    "blue": (60, 100, 240),
    "yellow": (240, 215, 50),
    "purple": (160, 70, 210),
    "orange": (250, 145, 35),
    "white": (240, 240, 240),
    "cyan": (50, 210, 220),
}
SIZES: dict[str, float] = {"small": 0.09, "medium": 0.13, "large": 0.18}  # radius / min(H, W)
BACKGROUNDS: dict[str, tuple[int, int, int]] = {
    "dark grey": (42, 42, 48),
    "navy": (22, 30, 64),
    "black": (10, 10, 12),
    "dark green": (20, 48, 32),
}
HELDOUT_COLOUR_FAMILY = frozenset(
    {("purple", "bounce"), ("orange", "wall"), ("green", "flash"), ("cyan", "pendulum"), ("yellow", "multi")}
)
HELDOUT_SHAPE_SOUND = frozenset(
    {("triangle", "glass"), ("square", "rubber"), ("diamond", "metal"), ("ball", "buzz")}
)
PITCH_OF_SIZE = {"small": "high-pitched ", "medium": "", "large": "deep "}
TONE_HZ = {"low": 220.0, "middle": 440.0, "high": 880.0}
TONE_WORD = {"low": "low", "middle": "mid-pitched", "high": "high"}
TICK_NOUN = {"wood": "tock", "metal": "tick", "glass": "ting", "rubber": "tap"}
FLOOR_FRAC = 0.12  # floor band height / frame height
WALL_FRAC = 0.06  # wall thickness / frame width
_NUMBERS = ["no", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve"]
_MIN_GAP_S = 0.08  # closest two onsets may be, so onset detection can tell them apart


@dataclass(frozen=True)
class Event:
    """A sound with a visible cause: `time` seconds, `kind` of event, index `obj` of the object."""

    time: float
    kind: str
    obj: int

    def to_dict(self) -> dict[str, Any]:
        return {"time": self.time, "kind": self.kind, "obj": self.obj}


Path2D = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]


@dataclass
class Sprite:
    """A drawn object: `path` maps times (N,) to centre x, y (N,) in pixels.

    `cause_times` are the instants at which its pose causes a sound; the frame nearest each one is
    rendered at that exact instant, so a contact is visible on the frame that carries the sound.
    """

    shape: str
    colour: str
    radius: float
    path: Path2D
    cause_times: list[float] = field(default_factory=list)
    lit: list[tuple[float, float]] | None = None  # flash intervals (start, end) seconds
    pivot: tuple[float, float] | None = None  # pendulum rod anchor


@dataclass
class Scene:
    """Everything needed to render and mix one clip."""

    sprites: list[Sprite]
    events: list[Event]
    sounds: list[tuple[float, np.ndarray]]
    caption: str
    floor: bool = False
    walls: bool = False


# ----------------------------------------------------------------------------------------------
# words


def _a(word: str) -> str:
    return ("an " if word[0] in "aeiou" else "a ") + word


def _number(n: int) -> str:
    return _NUMBERS[n] if n < len(_NUMBERS) else str(n)


def _times(n: int) -> str:
    return {1: "once", 2: "twice"}.get(n, f"{_number(n)} times")


def _join(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _quantize(t: float, sr: int) -> float:
    """Put a time on the audio sample grid, so the sound's first sample is exactly the event."""
    return round(t * sr) / sr


def _radius(size: str, cfg: SynthConfig) -> float:
    return SIZES[size] * min(cfg.width, cfg.height)


def _pick(rng: np.random.Generator, options: Any, n: int | None = None) -> Any:
    seq = list(options)
    if n is None:
        return seq[int(rng.integers(len(seq)))]
    return [seq[int(i)] for i in rng.permutation(len(seq))[:n]]


def _object(rng: np.random.Generator, sizes: list[str] | None = None) -> dict[str, Any]:
    return {
        "colour": _pick(rng, COLOURS),
        "shape": _pick(rng, SHAPES),
        "size": _pick(rng, sizes or list(SIZES)),
        "material": _pick(rng, MATERIALS),
    }


def heldout_pairs(family: str, params: dict[str, Any]) -> list[str]:
    """The held-out combinations present in a clip (empty for train/val clips)."""
    found = []
    for obj in params["objects"]:
        if (obj["colour"], family) in HELDOUT_COLOUR_FAMILY:
            found.append(f"colour x family: {obj['colour']} x {family}")
        sound = obj.get("material") or params.get("timbre")
        if (obj["shape"], sound) in HELDOUT_SHAPE_SOUND:
            found.append(f"shape x sound: {obj['shape']} x {sound}")
    return sorted(set(found))


# ----------------------------------------------------------------------------------------------
# bounce (and multi): parabolic arcs between impacts, each arc shorter by the restitution


def _sample_bouncer(
    rng: np.random.Generator, cfg: SynthConfig, obj: dict[str, Any], x_lo: float, x_hi: float,
    min_arc: float = 0.12,
) -> dict[str, Any]:
    """One bouncing object; it comes to rest once an arc would be shorter than `min_arc` seconds."""
    r = _radius(obj["size"], cfg)
    rest_y = cfg.height * (1 - FLOOR_FRAC) - r
    avail = rest_y - r - 1.0
    e = MATERIALS[obj["material"]].restitution + rng.uniform(-0.05, 0.05)
    arc = rng.uniform(0.45, 0.8)  # duration of the first full arc, seconds
    g = 8.0 * avail * rng.uniform(0.6, 0.95) / arc**2  # apex of that arc fills most of the frame
    t = rng.uniform(0.12, 0.5)
    impacts = [t]
    while arc >= min_arc and t + arc <= cfg.duration - 0.05:
        t += arc
        impacts.append(t)
        arc *= e
    impacts = [_quantize(x, cfg.sample_rate) for x in impacts]
    return {
        **obj,
        "x0": float(rng.uniform(x_lo, x_hi)),
        "x1": float(rng.uniform(x_lo, x_hi)),
        "gravity": float(g),
        "restitution": float(e),
        "impacts": impacts,
        "pre_arc": float((impacts[1] - impacts[0]) / e if len(impacts) > 1 else arc / e),
        "last_arc": float(arc if arc >= min_arc else 0.0),  # the arc in flight when the clip ends
    }


def _bouncer_path(p: dict[str, Any], cfg: SynthConfig) -> Path2D:
    r = _radius(p["size"], cfg)
    rest_y = cfg.height * (1 - FLOOR_FRAC) - r
    imp = np.asarray(p["impacts"])
    g = p["gravity"]
    # arc start times and durations: the pre-arc ending at the first impact, the arcs between
    # impacts, then the arc in flight (or rest, duration 0) after the last one
    starts = np.concatenate([[imp[0] - p["pre_arc"]], imp])
    durs = np.concatenate([[p["pre_arc"]], np.diff(imp), [p["last_arc"]]])

    def path(t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        i = np.clip(np.searchsorted(starts, t, side="right") - 1, 0, len(starts) - 1)
        s = t - starts[i]
        h = np.clip(0.5 * g * s * (durs[i] - s), 0.0, None)  # height above rest, 0 at both ends
        x = p["x0"] + (p["x1"] - p["x0"]) * t / cfg.duration
        return x, rest_y - h

    return path


def _impact_sounds(
    p: dict[str, Any], cfg: SynthConfig, rng: np.random.Generator, base: float
) -> list[tuple[float, np.ndarray]]:
    mat = MATERIALS[p["material"]]
    pitch = mat.base_hz * SIZE_PITCH[p["size"]] * p["detune"]
    first = max(np.diff(p["impacts"]).max(initial=0.0), 1e-6)
    out = []
    for k, t in enumerate(p["impacts"]):
        # later, slower landings are quieter, but never below 75% of the first, so each one stands
        # out over the ringing of the ones before
        speed = 1.0 if k == 0 else (p["impacts"][k] - p["impacts"][k - 1]) / first
        out.append((t, impact(p["material"], pitch, base * (0.75 + 0.25 * speed), cfg.sample_rate, rng)))
    return out


def _sound_phrase(obj: dict[str, Any]) -> str:
    return f"{PITCH_OF_SIZE[obj['size']]}{MATERIALS[obj['material']].noun}"


def _sample_bounce(rng: np.random.Generator, cfg: SynthConfig) -> dict[str, Any]:
    obj = _object(rng)
    r = _radius(obj["size"], cfg)
    b = _sample_bouncer(rng, cfg, obj, r + 2, cfg.width - r - 2)
    b["detune"] = float(rng.uniform(0.95, 1.05))
    return {"objects": [b], "template": int(rng.integers(3))}


def _build_bounce(params: dict[str, Any], cfg: SynthConfig, rng: np.random.Generator) -> Scene:
    b = params["objects"][0]
    sprite = Sprite(b["shape"], b["colour"], _radius(b["size"], cfg), _bouncer_path(b, cfg), list(b["impacts"]))
    events = [Event(t, "impact", 0) for t in b["impacts"]]
    thing = f"{b['size']} {b['colour']} {b['shape']}"
    n, sound, material = len(b["impacts"]), _sound_phrase(b), MATERIALS[b["material"]].adjective
    caption = [
        f"{_a(thing)} bounces on the floor, making {_a(sound)} each time it lands",
        f"{_a(b['size'])} {b['colour']} {material} {b['shape']} drops onto the floor and bounces {_times(n)}, "
        f"with {_a(sound)} at every landing",
        f"{_a(thing)} made of {b['material']} bounces {_times(n)}; every landing makes {_a(sound)}",
    ][params["template"]]
    return Scene([sprite], events, _impact_sounds(b, cfg, rng, 0.8), caption, floor=True)


def _sample_multi(rng: np.random.Generator, cfg: SynthConfig) -> dict[str, Any]:
    while True:
        n = int(rng.integers(2, 4))
        margin = 2.0
        lane = (cfg.width - 2 * margin) / n
        fits = [s for s in SIZES if _radius(s, cfg) <= lane / 2 - 1] or ["small"]
        colours = _pick(rng, COLOURS, n)
        materials = _pick(rng, MATERIALS, n)  # distinct materials: every object has its own sound
        objects: list[dict[str, Any]] = []
        for j in range(n):
            obj = {"colour": colours[j], "shape": _pick(rng, SHAPES), "size": _pick(rng, fits), "material": materials[j]}
            r = _radius(obj["size"], cfg)
            lo, hi = margin + j * lane + r + 1, margin + (j + 1) * lane - r - 1
            taken = [t for o in objects for t in o["impacts"]]
            # redraw until no onset is within _MIN_GAP_S of another object's, so every sound is
            # heard as its own onset; objects settle sooner (min_arc 0.2 s) to leave room
            for _ in range(200):
                b = _sample_bouncer(rng, cfg, obj, lo, max(lo, hi), min_arc=0.2)
                if all(abs(t - u) >= _MIN_GAP_S for t in b["impacts"] for u in taken):
                    b["detune"] = float(rng.uniform(0.95, 1.05))
                    b["lane"] = j
                    objects.append(b)
                    break
        if len(objects) >= 2:  # an object that found no room is left out; one alone is not "multi"
            return {"objects": objects, "lanes": n, "template": int(rng.integers(2))}


def _build_multi(params: dict[str, Any], cfg: SynthConfig, rng: np.random.Generator) -> Scene:
    sprites, events, sounds, parts = [], [], [], []
    for j, b in enumerate(params["objects"]):
        sprites.append(Sprite(b["shape"], b["colour"], _radius(b["size"], cfg), _bouncer_path(b, cfg), list(b["impacts"])))
        events += [Event(t, "impact", j) for t in b["impacts"]]
        sounds += _impact_sounds(b, cfg, rng, 0.55)
        parts.append(f"{_a(b['size'])} {b['colour']} {MATERIALS[b['material']].adjective} {b['shape']} "
                     f"with {_a(_sound_phrase(b))}")
    events.sort(key=lambda ev: (ev.time, ev.obj))
    n = len(params["objects"])
    caption = [
        f"{_number(n)} objects bounce on the floor side by side: {_join(parts)}",
        f"{_join(parts)} bounce on the floor at the same time, each landing with its own sound",
    ][params["template"]]
    return Scene(sprites, events, sounds, caption, floor=True)


# ----------------------------------------------------------------------------------------------
# wall: constant speed back and forth between two walls (a triangle wave in x)


def _wall_limits(cfg: SynthConfig, r: float) -> tuple[float, float]:
    wall = max(2.0, round(WALL_FRAC * cfg.width))
    return wall + r, cfg.width - wall - r


def _sample_wall(rng: np.random.Generator, cfg: SynthConfig) -> dict[str, Any]:
    obj = _object(rng)
    lo, hi = _wall_limits(cfg, _radius(obj["size"], cfg))
    span = hi - lo
    speed = _pick(rng, ["slowly", "quickly"])
    hits: list[float] = []
    while not hits:  # a short clip may end before the first hit: redraw the motion
        crossing = rng.uniform(0.9, 1.3) if speed == "slowly" else rng.uniform(0.45, 0.7)  # seconds
        v = span / crossing * (1 if rng.random() < 0.5 else -1)
        u0 = rng.uniform(0.1, 0.9) * span
        # hits where u0 + v t is a multiple of span
        n = int(cfg.duration / crossing) + 2
        ks = np.arange(-n, n + 1)
        hits = sorted(float(t) for t in (ks * span - u0) / v if 0.08 <= t <= cfg.duration - 0.05)
    return {
        "objects": [{**obj, "u0": float(u0), "velocity": float(v), "y": float(rng.uniform(0.35, 0.6) * cfg.height),
                     "detune": float(rng.uniform(0.95, 1.05)), "hits": [_quantize(t, cfg.sample_rate) for t in hits]}],
        "speed": speed,
        "template": int(rng.integers(2)),
    }


def _build_wall(params: dict[str, Any], cfg: SynthConfig, rng: np.random.Generator) -> Scene:
    o = params["objects"][0]
    r = _radius(o["size"], cfg)
    lo, hi = _wall_limits(cfg, r)
    span = hi - lo

    def path(t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        u = np.mod(o["u0"] + o["velocity"] * t, 2 * span)
        return lo + np.where(u <= span, u, 2 * span - u), np.full_like(t, o["y"])

    mat = MATERIALS[o["material"]]
    pitch = mat.base_hz * SIZE_PITCH[o["size"]] * o["detune"]
    sounds = [(t, impact(o["material"], pitch, 0.75, cfg.sample_rate, rng)) for t in o["hits"]]
    thing = f"{o['size']} {o['colour']} {o['shape']}"
    sound = _sound_phrase(o)
    caption = [
        f"{_a(thing)} slides {params['speed']} back and forth between two walls, making {_a(sound)} each time it hits one",
        f"{_a(o['size'])} {o['colour']} {mat.adjective} {o['shape']} moves {params['speed']} between two walls and "
        f"hits them {_times(len(o['hits']))}, each hit {_a(sound)}",
    ][params["template"]]
    sprite = Sprite(o["shape"], o["colour"], r, path, list(o["hits"]))
    return Scene([sprite], [Event(t, "wall_hit", 0) for t in o["hits"]], sounds, caption, walls=True)


# ----------------------------------------------------------------------------------------------
# flash: shapes in a row light up in turn, each with its own tone


def _sample_flash(rng: np.random.Generator, cfg: SynthConfig) -> dict[str, Any]:
    n = int(rng.integers(1, 4))
    spacing = cfg.width / (n + 1)
    fits = [s for s in SIZES if _radius(s, cfg) <= spacing / 2 - 1] or ["small"]
    colours, pitches = _pick(rng, COLOURS, n), _pick(rng, TONE_HZ, n)
    objects = [{"colour": colours[j], "shape": _pick(rng, SHAPES), "size": _pick(rng, fits), "pitch": pitches[j]}
               for j in range(n)]
    flashes: list[list[float]] = []  # [obj, start, end]
    t = rng.uniform(0.1, 0.4)
    while t <= cfg.duration - 0.2:
        length = rng.uniform(0.15, 0.35)
        j = int(rng.integers(n))
        start = _quantize(t, cfg.sample_rate)
        flashes.append([j, start, _quantize(min(t + length, cfg.duration), cfg.sample_rate)])
        t += length + rng.uniform(0.1, 0.4)
    return {"objects": objects, "timbre": _pick(rng, TIMBRES), "flashes": flashes,
            "y": float(rng.uniform(0.4, 0.6) * cfg.height), "template": int(rng.integers(2))}


def _still(x: float, y: float) -> Path2D:
    def path(t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return np.full_like(t, x), np.full_like(t, y)

    return path


def _build_flash(params: dict[str, Any], cfg: SynthConfig, rng: np.random.Generator) -> Scene:
    objs, timbre = params["objects"], params["timbre"]
    n = len(objs)
    sprites, sounds = [], []
    for j, o in enumerate(objs):
        x, y = cfg.width * (j + 1) / (n + 1), params["y"]
        lit = [(s, e) for k, s, e in params["flashes"] if k == j]
        sprites.append(Sprite(o["shape"], o["colour"], _radius(o["size"], cfg), _still(x, y), [s for s, _ in lit], lit=lit))
    for j, s, e in params["flashes"]:
        sounds.append((s, tone(TONE_HZ[objs[j]["pitch"]], e - s, 0.45, cfg.sample_rate, timbre)))
    events = [Event(s, "flash", int(j)) for j, s, _ in params["flashes"]]
    if n == 1:
        o = objs[0]
        thing, count, pitch = f"{o['size']} {o['colour']} {o['shape']}", _times(len(events)), TONE_WORD[o["pitch"]]
        caption = [
            f"{_a(thing)} flashes {count}, each flash with {_a(pitch)} {timbre}",
            f"{_a(thing)} lights up {count} while {_a(pitch)} {timbre} sounds",
        ][params["template"]]
    else:
        parts = [f"{_a(o['size'])} {o['colour']} {o['shape']} with {_a(TONE_WORD[o['pitch']])} {timbre}" for o in objs]
        caption = [
            f"{_number(n)} shapes in a row take turns flashing, each with its own tone: {_join(parts)}",
            f"{_join(parts)} flash one at a time, {_number(len(events))} flashes in all",
        ][params["template"]]
    return Scene(sprites, events, sounds, caption)


# ----------------------------------------------------------------------------------------------
# pendulum: theta(t) = A cos(2 pi (t - t0) / P), a tick at every extreme


def _sample_pendulum(rng: np.random.Generator, cfg: SynthConfig) -> dict[str, Any]:
    obj = _object(rng)
    r = _radius(obj["size"], cfg)
    length = rng.uniform(0.55, 0.7) * cfg.height
    max_sin = min((cfg.width / 2 - r - 2) / length, 0.9)
    amplitude = min(np.deg2rad(rng.uniform(22, 40)), np.arcsin(max_sin))
    speed = _pick(rng, ["slowly", "quickly"])
    period = rng.uniform(1.1, 1.5) if speed == "slowly" else rng.uniform(0.55, 0.75)
    t0 = rng.uniform(0.08, 0.08 + period / 2)
    ticks = [_quantize(t, cfg.sample_rate) for t in np.arange(t0, cfg.duration - 0.05, period / 2)]
    return {
        "objects": [{**obj, "detune": float(rng.uniform(0.95, 1.05))}],
        "length": float(length), "amplitude": float(amplitude), "period": float(period),
        "t0": float(ticks[0]), "ticks": ticks, "speed": speed, "side": 1 if rng.random() < 0.5 else -1,
        "template": int(rng.integers(2)),
    }


def _build_pendulum(params: dict[str, Any], cfg: SynthConfig, rng: np.random.Generator) -> Scene:
    o = params["objects"][0]
    px, py = cfg.width / 2, 0.08 * cfg.height
    L, A, P, t0 = params["length"], params["amplitude"], params["period"], params["t0"]
    side = params["side"]  # +1: the first extreme is on the right

    def path(t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        theta = side * A * np.cos(2 * np.pi * (t - t0) / P)
        return px + L * np.sin(theta), py + L * np.cos(theta)

    pitch = 2.0 * MATERIALS[o["material"]].base_hz * o["detune"]  # ticks are small and bright
    sounds = [(t, impact(o["material"], pitch, 0.7, cfg.sample_rate, rng, decay_scale=0.3)) for t in params["ticks"]]
    thing = f"{o['size']} {o['colour']} {o['shape']}"
    tick = f"{MATERIALS[o['material']].adjective} {TICK_NOUN[o['material']]}"
    caption = [
        f"a pendulum with {_a(thing)} swings {params['speed']}, making {_a(tick)} at each end of its swing",
        f"{_a(thing)} on a pendulum swings {params['speed']} from side to side; each of its "
        f"{_number(len(params['ticks']))} turns makes {_a(tick)}",
    ][params["template"]]
    sprite = Sprite(o["shape"], o["colour"], _radius(o["size"], cfg), path, list(params["ticks"]), pivot=(px, py))
    return Scene([sprite], [Event(t, "tick", 0) for t in params["ticks"]], sounds, caption)


# ----------------------------------------------------------------------------------------------

_SAMPLERS: dict[str, Callable[[np.random.Generator, SynthConfig], dict[str, Any]]] = {
    "bounce": _sample_bounce, "wall": _sample_wall, "flash": _sample_flash,
    "pendulum": _sample_pendulum, "multi": _sample_multi,
}
_BUILDERS: dict[str, Callable[[dict[str, Any], SynthConfig, np.random.Generator], Scene]] = {
    "bounce": _build_bounce, "wall": _build_wall, "flash": _build_flash,
    "pendulum": _build_pendulum, "multi": _build_multi,
}


def sample_params(family: str, rng: np.random.Generator, cfg: SynthConfig, split: str) -> dict[str, Any]:
    """Draw a family's parameters for `split`, redrawing until the held-out rule is met.

    The background and noise level are shared by every family.
    """
    if family not in _SAMPLERS:
        raise ValueError(f"unknown scene family {family!r}; choose one of {FAMILIES}.")
    want_heldout = split == "heldout"
    for _ in range(1000):
        params = _SAMPLERS[family](rng, cfg)
        pairs = heldout_pairs(family, params)
        if bool(pairs) == want_heldout:
            params["background"] = _pick(rng, BACKGROUNDS)
            params["noise_level"] = float(rng.uniform(0.0, cfg.max_noise))
            params["heldout_pairs"] = pairs
            return params
    raise RuntimeError(f"could not draw a {split!r} clip of family {family!r} in 1000 tries")  # pragma: no cover


def build_scene(family: str, params: dict[str, Any], cfg: SynthConfig, rng: np.random.Generator) -> Scene:
    """Sprites, events, sounds and caption of a clip from its parameters."""
    return _BUILDERS[family](params, cfg, rng)
