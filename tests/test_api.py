"""docs/api.md: every public name it lists imports from the path it gives."""

import importlib
import os
import pathlib
import re
import subprocess
import sys

import pytest

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


def _example() -> str:
  section = _API.read_text().split('## Bring your own model', 1)[1]
  return section.split('```python\n', 1)[1].split('```', 1)[0]


@pytest.mark.slow
def test_bring_your_own_model_example_runs_as_written(tmp_path):
  """docs/api.md's example: a user's model (flax BatchNorm at momentum
  0.99) trained with optax, swept with and without recalibration."""
  (tmp_path / 'example.py').write_text(_example())
  env = dict(os.environ, PYTHONPATH=str(pathlib.Path(__file__).parents[1]))
  out = subprocess.run([sys.executable, 'example.py'], cwd=tmp_path,
                       env=env, capture_output=True, text=True, timeout=600)
  assert out.returncode == 0, out.stderr[-3000:]
  assert (tmp_path / 'curves.png').stat().st_size > 10_000
  rows = {}
  for line in out.stdout.splitlines():
    m = re.match(r'(\w+(?: \w+)?)\s+(\S+)\s+test error at λ=0: ([\d.]+)\s+'
                 r'λ>0: ([\d.]+)\s+λ<0: ([\d.]+)', line)
    if m:
      rows[m[1], m[2]] = [float(v) for v in m.group(3, 4, 5)]
  assert len(rows) == 4, out.stdout
  at0, pos, neg = rows['recalibrated', '|G(0,1)|·sign(θ)']
  assert neg - pos > 0.1  # The asymmetric valley, recalibrated.
  assert at0 < 0.1  # A trained model: exact statistics at λ = 0.
