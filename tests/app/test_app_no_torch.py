"""The rating app runs without torch: its modules, and every module its pages import, leave torch unloaded."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

APP = Path(__file__).resolve().parents[2] / "human_eval_app"
SCRIPTS = {"app", "pages"}  # Streamlit scripts: they render when imported, so only their imports are loaded


def _modules() -> list[str]:
    """The app's plain modules, and the modules its Streamlit scripts import."""
    names = set()
    for path in APP.rglob("*.py"):
        rel = path.relative_to(APP.parent).with_suffix("")
        parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
        if parts[1:2] and parts[1] in SCRIPTS:
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.Import):
                    names.update(a.name for a in node.names)
                elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                    names.add(node.module)
        else:
            names.add(".".join(parts))
    return sorted(n for n in names if n != "streamlit" and not n.startswith("streamlit."))


def test_the_app_never_imports_torch() -> None:
    modules = _modules()
    assert "human_eval_app.media" in modules and "eval.preference" in modules
    code = (
        "import importlib, json, sys\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        "print(json.dumps(sorted(m for m in sys.modules if m == 'torch' or m.startswith('torch.'))))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         cwd=APP.parent)
    assert out.returncode == 0, out.stderr[-2000:]
    loaded = json.loads(out.stdout.strip().splitlines()[-1])
    assert loaded == [], f"importing the app loads torch: {loaded[:5]}"
