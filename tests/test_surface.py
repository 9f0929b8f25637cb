"""probe/studies/surface.py with directions='pca': the plane of the run's
path (directions.pca), the path's coordinates on it, and the figure."""

import jax
import numpy as np
import pytest
from conftest import load_json, small_probe_config

from valley_jax import checkpoint, defaults
from valley_jax.errors import InputError
from valley_jax.probe import runner as probe_runner
from valley_jax.probe.studies import surface


@pytest.mark.slow
def test_pca_surface_draws_the_path_of_the_run(trained_mlp, tmp_path):
  c = small_probe_config(trained_mlp, 'surface')
  c.surface.update(directions='pca', num_points=3)
  res = load_json(probe_runner.run(c, str(tmp_path))['surface'])
  path = res['surface']['trajectory']
  kept = checkpoint.epochs(trained_mlp)
  assert path['epochs'] == kept[:-1]  # Every kept epoch before the last.
  # Coordinates: dot products of θ_e − θ_f with the unit directions, by
  # NumPy from the checkpoints (up to each direction's sign), in units of
  # the largest |coordinate|.
  final = _flat(checkpoint.restore_model(trained_mlp, kept[-1])[0])
  rows = np.stack([_flat(checkpoint.restore_model(trained_mlp, e)[0]) -
                   final for e in path['epochs']])
  xy = np.asarray(path['coords']) * path['scale']
  centred = rows - rows.mean(0)
  _, sv, vt = np.linalg.svd(centred, full_matrices=False)
  ref = rows @ vt[:2].T
  np.testing.assert_allclose(np.abs(xy), np.abs(ref), rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(path['explained'],
                             sv[:2] ** 2 / np.sum(sv ** 2), rtol=1e-4)
  assert np.abs(path['coords']).max() == pytest.approx(1.0)
  # The centre of the grid is θf itself.
  assert res['surface']['loss'][1][1] == pytest.approx(
      res['curves'][0]['loss'][1])
  assert (tmp_path / 'surface' / 'figure.png').exists()


def _flat(variables):
  return np.concatenate([np.ravel(x) for x in
                         jax.tree.leaves(variables['params'])])


def test_unknown_surface_directions_are_refused():
  c = defaults.probe_config('')
  c.surface.directions = 'eigen'
  with pytest.raises(InputError, match="choose one of \\('random', 'pca'\\)"):
    surface._validate(c)
