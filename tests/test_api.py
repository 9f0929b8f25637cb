"""docs/api.md: every public name it lists imports from the path it gives."""

import importlib
import pathlib
import re

_API = pathlib.Path(__file__).parent.parent / 'docs' / 'api.md'


def _listed() -> list[str]:
  return re.findall(r'^- `(valley_jax\.[\w.]+)`', _API.read_text(), re.M)


def test_every_listed_name_imports():
  names = _listed()
  assert len(names) > 50
  missing = []
  for full in names:
    module, _, attr = full.rpartition('.')
    if not hasattr(importlib.import_module(module), attr):
      missing.append(full)
  assert not missing


def test_public_paths_are_the_core_modules():
  # One module per concept: the public path is the very module of core/,
  # so a monkeypatch or an isinstance check sees the same objects.
  from valley_jax import directions, landscape, normalize, tree
  from valley_jax.core import directions as core_directions
  from valley_jax.core import normalize as core_normalize
  from valley_jax.core import sweep
  from valley_jax.core import tree as core_tree
  assert tree is core_tree and directions is core_directions
  assert normalize is core_normalize and landscape is sweep
