"""core/wedge_model.py and probe/studies/subspace_training.py: Fort &
Jastrzebski's wedge model against closed forms, the random projection and
training in a subspace."""

import doctest
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from conftest import load_json, small_probe_config, tiny_train_config

from valley_jax.core import wedge_model
from valley_jax.errors import InputError
from valley_jax.probe import runner as probe_runner
from valley_jax.train import runner as train_runner


def test_docstring_examples():
  result = doctest.testmod(wedge_model)
  assert result.attempted > 0 and result.failed == 0


def _model(eps=0.1, w0=0.0):
  return wedge_model.WedgeModel.random(jax.random.key(0), dim=8, n_long=5,
                                       n_wedges=3, eps=eps, w0=w0)


def test_wedges_are_what_the_axes_say():
  m = _model()
  assert m.long_axes.shape == (3, 5) and m.short_mask.sum(1).tolist() == [3] * 3
  for axes, mask in zip(m.long_axes, m.short_mask):
    assert len(set(axes.tolist())) == 5 and not mask[axes].any()


def test_loss_by_hand():
  """ℓ_i = mean over short axes of max(0, |θ_j| − ε‖θ‖)², L = min_i ℓ_i."""
  m = _model(eps=0.1)
  rng = np.random.default_rng(0)
  for _ in range(20):
    theta = rng.normal(size=8)
    r = np.linalg.norm(theta)
    want = min(np.mean(np.maximum(np.abs(theta[mask]) - 0.1 * r, 0.0) ** 2)
               for mask in m.short_mask)
    assert float(m.loss(jnp.asarray(theta))) == pytest.approx(want,
                                                              rel=1e-5)


def test_scale_invariance_and_the_radial_profile():
  """w0 = 0: L(tθ) = t² L(θ); a ray inside a wedge stays at zero loss."""
  m = _model(eps=0.1)
  theta = jnp.asarray(np.random.default_rng(1).normal(size=8), jnp.float32)
  base = float(m.loss(theta))
  assert base > 0
  for t in (0.5, 2.0, 3.0):
    assert float(m.loss(t * theta)) == pytest.approx(t * t * base, rel=1e-5)
  inside = jnp.zeros(8).at[m.long_axes[1]].set(1.0)
  assert all(float(m.loss(t * inside)) == 0.0 for t in (0.1, 1.0, 10.0))


@pytest.mark.parametrize('eps,w0', [(0.1, 0.0), (0.3, 0.0), (0.2, 0.5)])
def test_width_along_a_short_axis_is_the_closed_form(eps, w0):
  """From a point of wedge 0's long subspace at radius r, along one short
  axis, the loss is zero exactly up to short_width(r) (ε r / √(1 − ε²)
  for w0 = 0): bisection on the loss agrees."""
  m = _model(eps, w0)
  j = int(np.flatnonzero(m.short_mask[0])[0])
  for r in (1.0, 2.0, 4.0):
    point = jnp.zeros(8).at[m.long_axes[0][0]].set(r)
    width = m.short_width(r)
    if w0 == 0:
      assert width == pytest.approx(eps * r / math.sqrt(1 - eps * eps))
    lo, hi = 0.0, 10 * r
    for _ in range(60):
      mid = 0.5 * (lo + hi)
      inside = float(m.wedge_losses(point.at[j].set(mid))[0]) == 0.0
      lo, hi = (mid, hi) if inside else (lo, mid)
    assert lo == pytest.approx(width, rel=1e-4)


def test_projection_and_training_in_a_subspace():
  p = wedge_model.projection(jax.random.key(3), 8, 3)
  np.testing.assert_allclose(np.asarray(p.T @ p), np.eye(3), atol=1e-5)
  # A quadratic whose minimum lies in the subspace: training finds it.
  target = jnp.asarray(p @ jnp.array([1.0, -2.0, 0.5]))
  theta0 = jnp.zeros(8)
  theta, losses = wedge_model.train_in_subspace(
      lambda t: jnp.sum((t - target) ** 2), theta0, p, optax.sgd(0.2), 100)
  np.testing.assert_allclose(np.asarray(theta), np.asarray(target),
                             atol=1e-4)
  assert losses.shape == (100,) and float(losses[-1]) < float(losses[0])
  # θ stays in θ0 + span(P): its component outside is zero.
  out = theta - p @ (p.T @ theta)
  assert float(jnp.linalg.norm(out)) < 1e-5


def test_the_wedge_model_needs_d_at_least_d_minus_n():
  """D = 8, n = 5: at d = 3 = D − n a random affine subspace meets wedge
  0's long subspace (zero loss from every seed); at d = 1, with ε = 0 (no
  width), it does not."""
  m = _model(eps=0.0)
  for seed in range(3):
    key = jax.random.key(10 + seed)
    t0 = jax.random.normal(key, (8,))
    for d, reach in ((3, True), (1, False)):
      p = wedge_model.projection(jax.random.fold_in(key, d), 8, d)
      theta, _ = wedge_model.train_in_subspace(m.loss, t0, p,
                                               optax.adam(0.05), 600)
      assert (float(m.loss(theta)) < 1e-8) == reach


def test_bad_wedge_models_are_refused():
  with pytest.raises(InputError, match='n_long'):
    wedge_model.WedgeModel.random(jax.random.key(0), 4, 4, 1, 0.1)
  with pytest.raises(InputError, match='eps'):
    wedge_model.WedgeModel.random(jax.random.key(0), 4, 2, 1, 1.0)
  with pytest.raises(InputError, match='subspace dimension'):
    wedge_model.projection(jax.random.key(0), 4, 5)


@pytest.mark.slow
def test_subspace_study_end_to_end(tmp_path):
  cfg = tiny_train_config(epochs=1, bn=False)
  cfg.train.keep_epochs = (1,)
  run = str(tmp_path / 'run')
  train_runner.run(cfg, run)
  c = small_probe_config(run, 'subspace')
  c.subspace.update(starts=(0, 1), dims=(2, 20), seeds=2, steps=5,
                    toy_dim=6, toy_long=4, toy_dims=(1,), toy_steps=50)
  res = load_json(probe_runner.run(c, str(tmp_path / 'probe'))['subspace'])
  net = res['subspace']['network']
  assert list(net) == ['epoch 0', 'epoch 1']
  for part in net.values():
    assert [r['d'] for r in part['dims']] == [2, 20]
    for r in part['dims']:
      lo, hi = r['accuracy']['ci']
      assert 0.0 <= lo <= r['accuracy']['mean'] <= hi <= 1.0
      assert r['accuracy']['n'] == 2
  toy = res['subspace']['toy']
  assert toy['predicted_threshold'] == 2
  assert [r['d'] for r in toy['starts']['random']] == [1, 2]
  assert len(res['findings']) == 4 and res['err_table'] is False
  assert (tmp_path / 'probe' / 'subspace' / 'figure.png').exists()
