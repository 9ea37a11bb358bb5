"""Fixtures of the flow-matching and sampler tests: the transformer tests' own, shared from
tests/dit/conftest.py (the debug model and input factories) rather than copied."""

from __future__ import annotations

import importlib.util
from pathlib import Path

_spec = importlib.util.spec_from_file_location("dit_conftest", Path(__file__).parent.parent / "dit" / "conftest.py")
assert _spec is not None and _spec.loader is not None
_dit = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_dit)

# pytest collects fixtures bound in a conftest's namespace.
one_thread, debug_model = _dit.one_thread, _dit.debug_model
config_factory, inputs_factory, randomizer = _dit.config_factory, _dit.inputs_factory, _dit.randomizer
