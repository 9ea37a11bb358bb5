"""The layers of docs/architecture.md, checked by reading every import of the packages with `ast`.

- A module imports only modules of its own layer or of the layers below (imports under
  `if TYPE_CHECKING:` included: an annotation that names a higher layer is an arrow up too).
- Only `avio` imports PyAV: every other package reads and writes media through it.
- No two files import each other, directly or around a circle, except through imports under
  `if TYPE_CHECKING:` (which never run).

Imports inside functions count: they run, just later.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# Bottom to top: each layer may import itself and the layers before it.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("media and formats", ("avio",)),
    ("training kit", ("avtrain",)),
    ("audio codec", ("audio_codec",)),
    ("evaluation", ("eval",)),
    ("rating app", ("human_eval_app",)),
    ("generator", ("av_model",)),
    ("command and demo", ("av_model.cli", "av_model.demo")),
]
PACKAGES = ("avio", "avtrain", "audio_codec", "eval", "human_eval_app", "av_model")
MEDIA_LIBRARIES = ("av",)  # PyAV


@dataclass(frozen=True)
class Import:
    source: str  # the importing module
    target: str  # the imported module, or the module that holds the imported name
    line: int
    type_checking: bool  # under `if TYPE_CHECKING:`


def _modules() -> dict[str, Path]:
    mods = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            rel = path.relative_to(ROOT).with_suffix("")
            parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
            mods[".".join(parts)] = path
    return mods


MODULES = _modules()


def _resolve(name: str) -> str:
    """The module a dotted name lives in: `a.b.c` is module `a.b` when `c` is a name in it."""
    while name not in MODULES and "." in name:
        name = name.rpartition(".")[0]
    return name


def _imports(module: str, path: Path) -> Iterator[Import]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    guarded: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            guarded.update(id(n) for stmt in node.body for n in ast.walk(stmt))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                stem = ".".join(base + ([node.module] if node.module else []))
            else:
                stem = node.module or ""
            names = [f"{stem}.{a.name}" for a in node.names]
        else:
            continue
        for name in names:
            yield Import(module, _resolve(name), node.lineno, id(node) in guarded)


IMPORTS = [imp for module, path in MODULES.items() for imp in _imports(module, path)]


def _layer(module: str) -> int | None:
    """Index of the layer a module belongs to (the most specific prefix wins); None if not ours."""
    best, best_len = None, -1
    for i, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best_len:
                best, best_len = i, len(prefix)
    return best


def test_every_package_module_has_a_layer() -> None:
    assert [m for m in MODULES if _layer(m) is None] == []


def test_imports_only_point_down() -> None:
    upward = []
    for imp in IMPORTS:
        src, dst = _layer(imp.source), _layer(imp.target)
        if src is not None and dst is not None and dst > src:
            upward.append(f"{imp.source}:{imp.line} imports {imp.target} "
                          f"({LAYERS[src][0]} -> {LAYERS[dst][0]}, a higher layer)")
    assert upward == [], "\n".join(upward)


def test_only_avio_touches_pyav() -> None:
    outside = [f"{imp.source}:{imp.line} imports {imp.target}" for imp in IMPORTS
               if imp.target.split(".")[0] in MEDIA_LIBRARIES and _layer(imp.source) != 0]
    assert outside == [], "read and write media through avio:\n" + "\n".join(outside)


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def test_no_import_circles_between_files() -> None:
    edges: dict[str, set[str]] = {}
    for imp in IMPORTS:
        if not imp.type_checking and imp.target in MODULES and imp.target != imp.source:
            edges.setdefault(imp.source, set()).add(imp.target)
    assert _cycles(edges) == []


@pytest.mark.parametrize("edges, expected", [
    ({"a": {"b"}, "b": {"c"}, "c": {"a"}}, [["a", "b", "c"]]),
    ({"a": {"b"}, "b": set()}, []),
])
def test_the_circle_finder_finds_circles(edges: dict[str, set[str]], expected: list[list[str]]) -> None:
    assert _cycles(edges) == expected


def test_the_import_reader_sees_lazy_and_guarded_imports() -> None:
    found = {(imp.source, imp.target, imp.type_checking) for imp in IMPORTS}
    assert ("av_model.sample.pipeline", "avio", False) in found  # an import inside a method
    assert ("av_model.sample.generator_file", "av_model.train.lit", True) in found  # under TYPE_CHECKING


def test_sampling_loads_without_lightning() -> None:
    import subprocess
    import sys

    code = ("import sys, av_model.sample.pipeline, av_model.sample.cli, av_model.sample.generator_file; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('lightning', 'pytorch_lightning')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "[]"


# Inside the generator, bottom to top (docs/architecture.md, "The package map of av_model").
ROLES: list[tuple[str, tuple[str, ...]]] = [
    ("model parts", ("av_model.dit", "av_model.vae", "av_model.text", "av_model.data")),
    ("cache and diffusion process", ("av_model.cache", "av_model.flow")),
    ("sampling", ("av_model.sample",)),
    ("training", ("av_model.train",)),
    ("command and demo", ("av_model.cli", "av_model.demo")),
]


def _role(module: str) -> int | None:
    for i, (_, prefixes) in enumerate(ROLES):
        if any(module == p or module.startswith(p + ".") for p in prefixes):
            return i
    return None


def test_generator_roles_only_point_down() -> None:
    """Sampling never imports training (so it runs without Lightning), the diffusion process and the
    cache import neither, and so on down. Annotation-only imports under TYPE_CHECKING are allowed
    here: `sample.generator_file` names `train.lit.AVDiffusion` in a type hint."""
    assert [m for m in MODULES if m.startswith("av_model.") and _role(m) is None] == []
    upward = []
    for imp in IMPORTS:
        src, dst = _role(imp.source), _role(imp.target)
        if src is not None and dst is not None and dst > src and not imp.type_checking:
            upward.append(f"{imp.source}:{imp.line} imports {imp.target} ({ROLES[src][0]} -> {ROLES[dst][0]})")
    assert upward == [], "\n".join(upward)
