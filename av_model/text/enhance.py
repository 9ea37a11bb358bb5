"""Prompt enhancers: a short user prompt rewritten into the caption style of the training data.

A generator follows prompts that read like its training captions. On the synthetic benchmark
every caption is a sentence of a small grammar (`av_model.data.synth_scenes`): "a small red ball
bounces on the floor, making a high-pitched knock each time it lands". A user types "red ball
bouncing". An enhancer runs before text encoding (`AVPipeline.prompt_enhancer`, `avgen sample
--enhance-prompt`) and closes that gap; the sidecar keeps the prompt as typed and as rewritten.

Two enhancers:

* `TemplateEnhancer` ("template", no weights): parses the prompt with the caption grammar's own
  vocabulary (`caption_attributes`), fills every attribute the prompt leaves out, and renders the
  grammar's first template for the scene's family (`render_caption`). Filling is deterministic: a
  missing attribute is picked by a hash of the prompt, so a prompt always gives the same caption and
  different prompts do not all get the same colour. A prompt that already names everything comes
  back as the grammar would write it.
* `CausalLMEnhancer` (a folder): a local causal language model (`transformers`
  `AutoModelForCausalLM` + `AutoTokenizer`, `local_files_only`: nothing is downloaded), prompted
  with a few short-prompt -> caption examples written by the template enhancer, decoded greedily;
  the first line it writes is the rewrite (the prompt itself when it writes nothing).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

from av_model.data.synth_draw import SHAPES
from av_model.data.synth_scenes import (
    COLOURS,
    PITCH_OF_SIZE,
    SIZES,
    TICK_NOUN,
    TONE_WORD,
    _a,
    _join,
    _number,
    _times,
)
from av_model.data.synth_sounds import MATERIALS, TIMBRES

__all__ = [
    "CaptionAttributes",
    "CausalLMEnhancer",
    "PromptEnhancer",
    "TemplateEnhancer",
    "caption_attributes",
    "load_enhancer",
    "render_caption",
]

FAMILY_ORDER = ("bounce", "wall", "flash", "pendulum", "multi")
SPEEDS = ("slowly", "quickly")
PITCHES = ("low", "middle", "high")

# Words of the grammar (and a few a user types) -> the attribute values they name.
_SHAPE_WORDS = {s: s for s in SHAPES} | {"circle": "ball", "sphere": "ball", "box": "square", "cube": "square"}
_MATERIAL_ADJ = {m.adjective: name for name, m in MATERIALS.items()} | {"wood": "wood", "metal": "metal",
                                                                        "steel": "metal", "iron": "metal"}
_MATERIAL_NOUN = {m.noun: name for name, m in MATERIALS.items()} | {v: k for k, v in TICK_NOUN.items()}
_PITCH_WORD = {"low": "low", "high": "high", "mid-pitched": "middle"}
_SPEED_WORD = {"slowly": "slowly", "slow": "slowly", "quickly": "quickly", "quick": "quickly", "fast": "quickly"}
_COUNT_WORD = {w: i for i, w in enumerate(("zero", "one", "two", "three", "four", "five"))} | {
    str(i): i for i in range(6)}
_TIMES_WORD = {"once": 1, "twice": 2}


@dataclass
class CaptionAttributes:
    """What a caption of the synthetic grammar says about its scene (None: not said).

    Attributes:
        family: "bounce", "wall", "flash", "pendulum" or "multi".
        objects: per object, left to right: "colour", "shape", "size", and "material" (impacts,
            ticks) or "pitch" ("low", "middle", "high": flashes).
        speed: "slowly" or "quickly" (wall, pendulum).
        timbre: the flashes' tone colour ("beep", "chime", "buzz").
        events: the number of events a caption counts ("twice", "three times"), if it counts them.
        count: the number of objects the prompt asks for ("two balls"), if it says.
    """

    family: str | None = None
    objects: list[dict[str, str]] = field(default_factory=list)
    speed: str | None = None
    timbre: str | None = None
    events: int | None = None
    count: int | None = None

    def missing(self) -> list[str]:
        """The attributes the family's caption needs that are not given."""
        if self.family is None or not self.objects:
            return ["family" if self.family is None else "objects"]
        keys = ["colour", "shape", "size", "pitch" if self.family == "flash" else "material"]
        out = [f"objects[{j}].{k}" for j, o in enumerate(self.objects) for k in keys if not o.get(k)]
        if self.family in ("wall", "pendulum") and self.speed is None:
            out.append("speed")
        if self.family == "flash" and self.timbre is None:
            out.append("timbre")
        if self.family == "flash" and len(self.objects) == 1 and self.events is None:
            out.append("events")
        return out


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9]+(?:-[a-z]+)?", text.lower())


def _shape_of(word: str) -> str | None:
    for cand in (word, word[:-1] if word.endswith("s") else word, word[:-2] if word.endswith("es") else word):
        if cand in _SHAPE_WORDS:
            return _SHAPE_WORDS[cand]
    return None


def caption_attributes(text: str) -> CaptionAttributes:
    """Parse a caption (or a short prompt) with the synthetic grammar's vocabulary.

    Objects are the shape words, in order. Colour, size and material adjectives attach to the
    next shape; sound words (a material's noun, a tone's pitch) and "made of X" attach to the
    shape before them, as the grammar writes them; words after the last shape attach to it.
    """
    words = _words(text)
    attrs = CaptionAttributes()
    shape_at = [i for i, w in enumerate(words) if _shape_of(w) is not None]
    objects: list[dict[str, str]] = [{"shape": str(_shape_of(words[i]))} for i in shape_at]
    pending: dict[str, str] = {}  # adjectives waiting for their shape

    def owner(i: int, forward: bool) -> dict[str, str] | None:
        """The object word i belongs to: the next shape (forward) or the one before."""
        before = [k for k, s in enumerate(shape_at) if s < i]
        after = [k for k, s in enumerate(shape_at) if s > i]
        if forward and after:
            return objects[after[0]]
        if before:
            return objects[before[-1]]
        return objects[after[0]] if after else None

    for i, w in enumerate(words):
        prev = words[i - 1] if i else ""
        target: dict[str, str] | None = None
        if w in COLOURS:
            target, key, value = owner(i, True), "colour", w
        elif w in SIZES:
            target, key, value = owner(i, True), "size", w
        elif w in _MATERIAL_ADJ:
            target, key, value = owner(i, prev != "of"), "material", _MATERIAL_ADJ[w]
        elif w in _MATERIAL_NOUN:
            target, key, value = owner(i, False), "material", _MATERIAL_NOUN[w]
        elif w in _PITCH_WORD:
            target, key, value = owner(i, False), "pitch", _PITCH_WORD[w]
        elif w in TIMBRES or w.rstrip("s") in TIMBRES:
            attrs.timbre = w if w in TIMBRES else w.rstrip("s")
            continue
        elif w in _SPEED_WORD:
            attrs.speed = _SPEED_WORD[w]
            continue
        elif w in _TIMES_WORD:
            attrs.events = _TIMES_WORD[w]
            continue
        elif w == "times" and prev in _NUMBERS_OR_DIGITS:
            attrs.events = _NUMBERS_OR_DIGITS[prev]
            continue
        elif w in _COUNT_WORD and i + 1 < len(words) and (_shape_of(words[i + 1]) or words[i + 1] in (
                "objects", "shapes", "things") or (i + 2 < len(words) and _shape_of(words[i + 2]))):
            attrs.count = _COUNT_WORD[w]
            continue
        else:
            continue
        if target is None:
            pending.setdefault(key, value)
        else:
            target.setdefault(key, value)
    # "red and blue balls": a plural shape word with several colours before it names one object per colour.
    for k in range(len(shape_at) - 1, -1, -1):
        i, start = shape_at[k], shape_at[k - 1] + 1 if k else 0
        colours = [w for w in words[start:i] if w in COLOURS]
        if words[i] != objects[k]["shape"] and len(colours) > 1:
            objects[k + 1:k + 1] = [{**objects[k], "colour": c} for c in colours[1:]]
    if not objects and pending:
        objects.append({})
    for key, value in pending.items():
        for o in objects:
            o.setdefault(key, value)
    attrs.objects = objects
    attrs.family = _family(words, max(len(objects), attrs.count or 0))
    return attrs


_NUMBERS_OR_DIGITS = {w: i for i, w in enumerate(("no", "one", "two", "three", "four", "five", "six", "seven",
                                                  "eight", "nine", "ten", "eleven", "twelve"))} | {
    str(i): i for i in range(100)}


def _family(words: list[str], n_objects: int) -> str | None:
    text = " ".join(words)
    if "pendulum" in text or "swing" in text:
        return "pendulum"
    if "wall" in text or "slide" in text or "back and forth" in text:
        return "wall"
    if re.search(r"\bflash|\blight|\bblink|\bglow", text) or any(w in TIMBRES or w.rstrip("s") in TIMBRES
                                                               for w in words):
        return "flash"
    if re.search(r"\bbounc|\bdrop|\bland|\bjump|\bfall", text):
        return "multi" if n_objects >= 2 else "bounce"
    return None


def render_caption(attrs: CaptionAttributes) -> str:
    """The caption the synthetic grammar writes for complete attributes (its first template per family).

    Raises:
        ValueError: an attribute the family's caption needs is missing (`CaptionAttributes.missing`).
    """
    missing = attrs.missing()
    if missing:
        raise ValueError(f"cannot write the caption: missing {', '.join(missing)}")
    objs, fam = attrs.objects, attrs.family

    def thing(o: dict[str, str]) -> str:
        return f"{o['size']} {o['colour']} {o['shape']}"

    def sound(o: dict[str, str]) -> str:
        return f"{PITCH_OF_SIZE[o['size']]}{MATERIALS[o['material']].noun}"

    if fam == "bounce":
        return f"{_a(thing(objs[0]))} bounces on the floor, making {_a(sound(objs[0]))} each time it lands"
    if fam == "wall":
        return (f"{_a(thing(objs[0]))} slides {attrs.speed} back and forth between two walls, making "
                f"{_a(sound(objs[0]))} each time it hits one")
    if fam == "pendulum":
        o = objs[0]
        tick = f"{MATERIALS[o['material']].adjective} {TICK_NOUN[o['material']]}"
        return f"a pendulum with {_a(thing(o))} swings {attrs.speed}, making {_a(tick)} at each end of its swing"
    if fam == "flash":
        if len(objs) == 1:
            o = objs[0]
            assert attrs.events is not None
            return f"{_a(thing(o))} flashes {_times(attrs.events)}, each flash with {_a(TONE_WORD[o['pitch']])} {attrs.timbre}"
        parts = [f"{_a(o['size'])} {o['colour']} {o['shape']} with {_a(TONE_WORD[o['pitch']])} {attrs.timbre}"
                 for o in objs]
        return f"{_number(len(objs))} shapes in a row take turns flashing, each with its own tone: {_join(parts)}"
    parts = [f"{_a(o['size'])} {o['colour']} {MATERIALS[o['material']].adjective} {o['shape']} with {_a(sound(o))}"
             for o in objs]
    return f"{_number(len(objs))} objects bounce on the floor side by side: {_join(parts)}"


class PromptEnhancer(Protocol):
    """Rewrites prompts before text encoding; `name` is recorded in each clip's sidecar."""

    name: str

    def rewrite(self, prompts: list[str]) -> list[str]: ...


def _pick(key: str, options: list[str]) -> str:
    """A deterministic choice among `options` keyed by `key` (stable across runs and machines)."""
    digest = hashlib.sha256(key.encode()).digest()
    return options[int.from_bytes(digest[:8], "big") % len(options)]


class TemplateEnhancer:
    """The weights-free enhancer for the synthetic domain (module docstring).

    Args:
        default_family: the family of a prompt that names no motion ("a red ball").
    """

    name = "template"

    def __init__(self, default_family: str = "bounce") -> None:
        if default_family not in FAMILY_ORDER:
            raise ValueError(f"default_family must be one of {FAMILY_ORDER}; got {default_family!r}.")
        self.default_family = default_family

    def complete(self, prompt: str) -> CaptionAttributes:
        """The prompt's attributes with every missing one filled (deterministically, by the prompt)."""
        attrs = caption_attributes(prompt)
        key = " ".join(_words(prompt))
        fam = attrs.family or self.default_family
        want = attrs.count or len(attrs.objects) or 1
        if fam in ("bounce", "multi"):
            fam = "multi" if want >= 2 else "bounce"
        single = fam in ("bounce", "wall", "pendulum")
        n = 1 if single else min(max(want, 2 if fam == "multi" else 1), 3)
        objects = [dict(o) for o in attrs.objects[:n]]
        while len(objects) < n:  # "two balls": the objects not described copy the one that is
            objects.append({k: v for k, v in (objects[-1] if objects else {}).items() if k in ("shape",)})
        # Several objects get distinct colours, materials and pitches where the prompt leaves them open,
        # as the grammar's scenes have them (every object its own sound).
        sizes = ["small", "medium"] if n >= 2 else list(SIZES)
        for j, o in enumerate(objects):
            taken = {k: {p.get(k) for p in objects if p is not o} for k in ("colour", "material", "pitch")}
            for k, options in (("colour", list(COLOURS)), ("shape", list(SHAPES)), ("size", sizes),
                               ("pitch" if fam == "flash" else "material",
                                list(PITCHES) if fam == "flash" else list(MATERIALS))):
                if not o.get(k):
                    free = [v for v in options if v not in taken.get(k, set())] or options
                    o[k] = _pick(f"{key}|{j}|{k}", free)
            o.pop("material" if fam == "flash" else "pitch", None)
        return replace(attrs, family=fam, objects=objects,
                       speed=attrs.speed or (_pick(f"{key}|speed", list(SPEEDS)) if fam in ("wall", "pendulum")
                                             else None),
                       timbre=attrs.timbre or (_pick(f"{key}|timbre", list(TIMBRES)) if fam == "flash" else None),
                       events=attrs.events or (3 if fam == "flash" and n == 1 else None))

    def rewrite(self, prompts: list[str]) -> list[str]:
        return [render_caption(self.complete(p)) if p.strip() else p for p in prompts]


DEFAULT_INSTRUCTION = ("Rewrite each short description of a video with sound as one full caption: the size, "
                       "colour and shape of every object, how it moves, and the sound it makes.")
FEW_SHOT = ("red ball bouncing", "a blue square sliding between walls", "a pendulum swinging fast",
            "two triangles flashing with chimes")


class CausalLMEnhancer:
    """A local causal language model as the enhancer (module docstring).

    Args:
        path: folder of a model saved with `save_pretrained` (config, tokenizer, weights).
        max_new_tokens: longest rewrite, in tokens.
        device: where the model runs.
        instruction: the line before the examples.
        examples: short prompts whose template rewrites are the few-shot examples.

    Raises:
        FileNotFoundError: `path` is not a folder.
        ValueError: the folder holds no model `transformers` can load from local files.
    """

    def __init__(self, path: str | Path, max_new_tokens: int = 64, device: str = "cpu",
                 instruction: str = DEFAULT_INSTRUCTION, examples: tuple[str, ...] = FEW_SHOT) -> None:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        path = Path(path)
        if not path.is_dir():
            raise FileNotFoundError(f"--enhance-prompt {path}: no such folder; give 'template' or the folder of a "
                                    "local causal language model (saved with save_pretrained: config.json, tokenizer "
                                    "files and weights).")
        if not (path / "config.json").is_file():
            raise ValueError(f"--enhance-prompt {path}: the folder has no config.json, so it is not a model saved "
                             "with save_pretrained.")
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
            model: Any = AutoModelForCausalLM.from_pretrained(path, local_files_only=True)
            self.model = model.to(device).eval()
        except (OSError, ValueError, KeyError) as err:
            raise ValueError(f"--enhance-prompt {path}: transformers cannot load a causal language model and its "
                             f"tokenizer from this folder ({err}).") from None
        self.name, self.max_new_tokens, self.device = str(path), max_new_tokens, device
        template = TemplateEnhancer()
        shots = "\n".join(f"short: {s}\ncaption: {c}" for s, c in zip(examples, template.rewrite(list(examples))))
        self.prefix = f"{instruction}\n{shots}\n"

    def rewrite(self, prompts: list[str]) -> list[str]:
        import torch

        out = []
        limit: int = int(getattr(self.model.config, "max_position_embeddings", None) or getattr(
            self.model.config, "n_positions", None) or 1024)
        for prompt in prompts:
            if not prompt.strip():
                out.append(prompt)
                continue
            ids = self.tokenizer(f"{self.prefix}short: {prompt}\ncaption:", return_tensors="pt")["input_ids"]
            ids = ids[:, -max(1, limit - self.max_new_tokens):].to(self.device)  # the end holds the prompt
            pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.tokenizer.eos_token_id
            with torch.no_grad():
                gen = self.model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=self.max_new_tokens,
                                          do_sample=False, pad_token_id=pad)
            text = str(self.tokenizer.decode(gen[0, ids.shape[1]:], skip_special_tokens=True))
            line = text.strip().split("\n")[0].strip()
            out.append(line or prompt)
        return out


def load_enhancer(spec: str, **kwargs: Any) -> PromptEnhancer:
    """"template" (weights-free), or the folder of a local causal language model."""
    if spec == "template":
        return TemplateEnhancer()
    return CausalLMEnhancer(spec, **kwargs)
