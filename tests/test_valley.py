"""valley_jax.probe.studies.valley: curves at scales s ≠ 1 (where s and s²
differ) against a direct evaluation of θ + λ·s·d in NumPy, with d built by
hand from the paper's formulas."""

import jax
import ml_collections
import numpy as np
import pytest

from conftest import tiny_train_config
from valley_jax import checkpoint, data, defaults, models, outputs
from valley_jax.probe import runner as probe_runner
from valley_jax.train import runner as train_runner


@pytest.fixture(scope='module')
def no_bn_run(tmp_path_factory):
  """A 1-epoch digits MLP without BN (no recalibration in the sweep)."""
  w = str(tmp_path_factory.mktemp('nobn'))
  train_runner.run(tiny_train_config(epochs=1, bn=False), w)
  return w


def _hand_direction(name: str, leaves: list[np.ndarray]) -> list[np.ndarray]:
  """The direction `name` per leaf, before normalisation (float64)."""
  sign = lambda x: np.where(x >= 0, 1.0, -1.0)  # noqa: E731 (0 -> +1)
  return [{'ones': np.ones_like(x), 'ones_sc': sign(x), 'theta': x,
           'sign': sign(x), 'sign_centered': sign(x - x.mean()),
           'sgp': (x > 0) * 1.0, 'sgp_centered': (x - x.mean() > 0) * 1.0
           }[name] for x in leaves]


def _direct(model, leaves, treedef, d, coeff, x, y):
  """Mean CE loss and error of θ + coeff·d (NS: ‖d‖ = ‖θ‖) at float64."""
  norm = lambda t: np.sqrt(sum(np.sum(a * a) for a in t))  # noqa: E731
  k = norm(leaves) / norm(d)
  params = jax.tree.unflatten(treedef, [
      (a + coeff * k * b).astype(np.float32) for a, b in zip(leaves, d)])
  logits = np.asarray(model.apply({'params': params}, x, train=False),
                      np.float64)
  logp = logits - logits.max(1, keepdims=True)
  logp -= np.log(np.exp(logp).sum(1, keepdims=True))
  return (-logp[np.arange(len(y)), y].mean(),
          float(np.mean(logits.argmax(1) != y)))


@pytest.mark.slow
def test_scaled_curves_equal_a_direct_evaluation(no_bn_run, tmp_path):
  c = defaults.probe_config(no_bn_run)
  c.kind = 'noise_types,special'
  c.noise_types.noises = ('ones',)
  c.noise_types.scales = (0.2, 2.0)
  c.special.directions = ('sign', 'sign_centered', 'sgp', 'sgp_centered')
  c.special.scale = 2.0
  c.sweep.update(num_points=3, eval_batch_size=360)
  paths = probe_runner.run(c, str(tmp_path))
  variables, cfg = checkpoint.restore_model(no_bn_run)
  ds = data.from_config(ml_collections.ConfigDict(cfg['data']))
  model = models.from_config(ml_collections.ConfigDict(cfg['model']),
                             ds.num_classes, ds.input_shape)
  flat, treedef = jax.tree.flatten(variables['params'])
  leaves = [np.asarray(a, np.float64) for a in flat]
  checked = 0
  for kind in ('noise_types', 'special'):
    for curve in outputs.read_json(paths[kind])['curves']:
      name = curve['direction']
      if kind == 'noise_types' and curve['sign_consistent']:
        name = 'ones_sc'
      d = _hand_direction(name, leaves)
      assert curve['scale'] in (0.2, 2.0)
      for lam, loss, err in zip(curve['lambdas'], curve['loss'],
                                curve['error']):
        want = _direct(model, leaves, treedef, d, lam * curve['scale'],
                       ds.x_test, ds.y_test)
        np.testing.assert_allclose(loss, want[0], rtol=2e-4, atol=1e-5)
        assert abs(err - want[1]) <= 1.5 / len(ds.y_test)
        checked += 1
  assert checked == 3 * (4 + 4)  # 3 λ × (2 noises × 2 scales + 4 special)
