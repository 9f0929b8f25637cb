"""core/hessian.py: HVPs, directional curvature, Hutchinson's trace, power
iteration and Lanczos against jax.hessian."""

import doctest

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import flatten_util

from valley_jax import models, sharding
from valley_jax.core import hessian, steps, sweep


_N, _B = 13, 5  # 13 examples in batches of 5: the last one is padded.


@pytest.fixture
def x64():
  """Float64 throughout the test (exact comparisons)."""
  with jax.enable_x64(True):
    yield


def _ce64(model):
  """A float64 loss of one batch (the repo's CE is float32 by design)."""

  def loss_fn(params, batch_stats, x, y, w):
    logits = model.apply({'params': params, 'batch_stats': batch_stats}, x,
                         train=False)
    picked = jnp.take_along_axis(logits, y[:, None], -1)[:, 0]
    return jnp.sum(w * (jax.nn.logsumexp(logits, -1) - picked))

  return loss_fn


def _problem(bn: bool, dtype=np.float64):
  """A 4-5-3 MLP (43 or 53 parameters), 13 examples, given BN statistics."""
  model = models.build_model('mlp', 3, hidden=(5,), bn=bn)
  rng = np.random.default_rng(0)
  x = rng.normal(size=(_N, 4)).astype(dtype)
  y = rng.integers(0, 3, _N).astype(np.int32)
  v = model.init(jax.random.key(0), x[:1])
  cast = lambda t: jax.tree.map(lambda a: jnp.asarray(a, dtype), t)  # noqa: E731
  params = cast(v['params'])
  stats = {}
  if bn:  # Statistics that are not those of this data: they are given.
    stats = {'bn1': {'mean': jnp.asarray(rng.normal(size=5), dtype),
                     'var': jnp.asarray(rng.uniform(0.5, 2.0, 5), dtype)}}
  return model, params, stats, x, y, sweep.make_batches(x, y, _B)


def _hessian(loss_fn, params, stats, x, y):
  """The exact [n, n] Hessian of the mean loss, all data in one batch."""
  flat, unravel = flatten_util.ravel_pytree(params)
  ones = jnp.ones(len(y), flat.dtype)
  mean = lambda f: loss_fn(unravel(f), stats, x, y, ones) / len(y)  # noqa: E731
  return np.asarray(jax.jit(jax.hessian(mean))(flat)), flat, unravel


def _flat(t):
  return np.asarray(flatten_util.ravel_pytree(t)[0])


@pytest.mark.slow
@pytest.mark.parametrize('bn', [False, True])
def test_hvp_quadratic_form_and_directional_match_hessian(x64, bn):
  model, params, stats, x, y, data = _problem(bn)
  f = _ce64(model)
  hess, flat, unravel = _hessian(f, params, stats, x, y)
  v = unravel(jnp.asarray(np.random.default_rng(1).normal(size=flat.size)))
  vf = _flat(v)
  c = hessian.make_curvature(model, loss_fn=f)  # The functions, jitted.
  np.testing.assert_allclose(_flat(c.hvp(params, stats, v, data)),
                             hess @ vf, rtol=1e-10, atol=1e-12)
  np.testing.assert_allclose(c.quadratic_form(params, stats, v, data),
                             vf @ hess @ vf, rtol=1e-10)
  d = jax.tree.map(lambda a: 3.0 * a, v)  # The scale of d cancels.
  np.testing.assert_allclose(c.directional(params, stats, d, data),
                             vf @ hess @ vf / (vf @ vf), rtol=1e-10)
  ones = np.ones(len(y))
  np.testing.assert_allclose(c.loss(params, stats, data),
                             f(params, stats, x, y, ones) / len(y),
                             rtol=1e-12)


@pytest.mark.slow
def test_model_loss_in_float32_matches_hessian():
  """The sweep's own loss (float32, BN with given statistics)."""
  model, params, stats, x, y, data = _problem(True, np.float32)
  f = hessian.batch_loss(model)
  hess, flat, unravel = _hessian(f, params, stats, x, y)
  v = unravel(jnp.asarray(np.random.default_rng(1).normal(size=flat.size),
                          jnp.float32))
  vf = _flat(v)
  scale = np.abs(hess).max() * np.linalg.norm(vf)
  c = hessian.make_curvature(model)
  np.testing.assert_allclose(_flat(c.hvp(params, stats, v, data)),
                             hess @ vf, atol=1e-5 * scale)
  np.testing.assert_allclose(c.quadratic_form(params, stats, v, data),
                             vf @ hess @ vf, rtol=1e-4)
  # Its mean loss is the sweep's loss at λ = 0.
  out = sweep.make_sweep(model)(params, stats, [params], np.zeros((1, 1)),
                                data)
  np.testing.assert_allclose(c.loss(params, stats, data), out['loss'][0],
                             rtol=1e-6)


@pytest.mark.slow
def test_hutchinson_is_the_mean_of_its_probes(x64):
  model, params, stats, x, y, data = _problem(True)
  f = _ce64(model)
  hess, _, _ = _hessian(f, params, stats, x, y)
  key = jax.random.key(3)
  v_KxN = np.asarray(jax.vmap(lambda t: flatten_util.ravel_pytree(t)[0])(
      hessian.rademacher(key, params, 6)))
  q_K = np.einsum('kn,nm,km->k', v_KxN, hess, v_KxN)
  for chunk in (1, 4):  # One at a time, or vmapped 4 + 2: same probes.
    c = hessian.make_curvature(model, chunk=chunk, loss_fn=f)
    est, se = c.hutchinson(params, stats, key, data, 6)
    np.testing.assert_allclose(est, q_K.mean(), rtol=1e-10)
    np.testing.assert_allclose(se, q_K.std(ddof=1) / np.sqrt(6), rtol=1e-8)


@pytest.mark.slow
def test_hutchinson_converges_to_the_exact_trace(x64):
  model, params, stats, x, y, data = _problem(True)
  f = _ce64(model)
  hess, _, _ = _hessian(f, params, stats, x, y)
  k = 2000
  c = hessian.make_curvature(model, loss_fn=f)
  est, se = c.hutchinson(params, stats, jax.random.key(0), data, k)
  # A Rademacher probe's variance: 2 Σ_{i≠j} H_ij² (Hutchinson 1989).
  sigma = np.sqrt(2 * (np.sum(hess ** 2) - np.sum(np.diag(hess) ** 2)) / k)
  assert abs(float(est) - np.trace(hess)) < 4 * sigma
  assert float(se) == pytest.approx(sigma, rel=0.15)


def test_hutchinson_is_exact_for_a_diagonal_hessian(x64):
  """vᵀHv = Σ v_i² H_ii = tr(H) for every Rademacher v."""

  def loss_fn(p, s, x, y, w):  # Elementwise, hence a diagonal Hessian.
    del s, y
    return sum(jnp.sum(w[:, None, None] * jnp.cosh(a * x[:, :1, None]))
               for a in jax.tree.leaves(p))

  params = {'a': jnp.array([0.3, -1.2, 2.0]), 'b': jnp.array([[0.5], [1.5]])}
  x = np.array([[1.0], [2.0], [-0.5]])
  data = sweep.make_batches(x, np.zeros(3, np.int32), 2)
  hess, _, _ = _hessian(loss_fn, params, {}, x, np.zeros(3, np.int32))
  assert np.allclose(hess, np.diag(np.diag(hess)))
  c = hessian.make_curvature(None, loss_fn=loss_fn)
  for seed in range(3):
    est, _ = c.hutchinson(params, {}, jax.random.key(seed), data, 1)
    np.testing.assert_allclose(est, np.trace(hess), rtol=1e-12)


@pytest.mark.slow
def test_power_iteration_and_lanczos_match_eigvalsh(x64):
  model, params, stats, x, y, data = _problem(True)
  f = _ce64(model)
  hess, _, _ = _hessian(f, params, stats, x, y)
  eigs = np.linalg.eigvalsh(hess)
  by_size = eigs[np.argsort(np.abs(eigs))]
  top, gap = by_size[-1], abs(by_size[-2] / by_size[-1])
  assert gap < 0.9  # The convergence rate of the power iteration.
  iters = int(np.ceil(np.log(1e-12) / np.log(gap) / 2)) + 5
  c = hessian.make_curvature(model, loss_fn=f)
  c.power_iteration(params, stats, jax.random.key(1), data, 3)
  e = c.power_iteration(params, stats, jax.random.key(0), data, iters)
  assert c.power_iteration.jitted._cache_size() == 1  # iters is traced.
  np.testing.assert_allclose(e.value, top, rtol=1e-8)
  np.testing.assert_allclose(np.abs(_flat(e.vector) @ np.linalg.eigh(hess)[1]
                                    [:, np.argmax(np.abs(eigs))]), 1.0,
                             rtol=1e-5)
  assert float(e.residual) < 1e-4 * abs(top)
  # Far fewer steps than parameters: the extreme Ritz values have converged.
  ritz = c.lanczos(params, stats, jax.random.key(0), data, 20)
  np.testing.assert_allclose([ritz[0], ritz[-1]], [eigs[0], eigs[-1]],
                             rtol=1e-8)


@pytest.mark.slow
def test_compiled_once_for_new_points_directions_and_keys(monkeypatch):
  model, params, stats, _, _, data = _problem(True, np.float32)
  traces = []
  original = hessian.quadratic_form
  monkeypatch.setattr(hessian, 'quadratic_form',
                      lambda *a: traces.append(1) or original(*a))
  c = hessian.make_curvature(model)
  out = []
  for i in range(3):
    p = jax.tree.map(lambda a: a * (1.0 + 0.1 * i), params)
    d = jax.tree.map(lambda a: a + i, params)
    out.append((c.directional(p, stats, d, data),
                c.hutchinson(p, stats, jax.random.key(i), data, 4)[0]))
    if i == 0:
      n = len(traces)
  assert n == 2  # One trace each for directional and hutchinson.
  assert len(traces) == n
  assert c.hutchinson.jitted._cache_size() == 1
  assert len({float(o[1]) for o in out}) == 3


@pytest.mark.slow
def test_eight_devices_equal_one():
  model, params, stats, x, y, _ = _problem(True, np.float32)
  outs = []
  for n in (1, 8):
    mesh = sharding.make_mesh(n)
    data = sweep.make_batches(np.tile(x, (4, 1)), np.tile(y, 4), 16, mesh)
    c = hessian.make_curvature(model, mesh=mesh)
    trace, se = c.hutchinson(params, stats, jax.random.key(0), data, 4)
    outs.append(np.hstack([trace, se,
                           _flat(c.hvp(params, stats, params, data))]))
  np.testing.assert_allclose(outs[0], outs[1], rtol=1e-4, atol=1e-6)


@pytest.mark.slow
def test_docstring_examples():
  result = doctest.testmod(hessian, optionflags=doctest.ELLIPSIS)
  assert result.attempted > 5 and result.failed == 0


def test_batch_loss_is_the_eval_step_loss():
  model, params, stats, x, y, _ = _problem(True, np.float32)
  w = np.ones(len(y), np.float32)
  step = steps.make_eval_step(model, (0.0,), (1.0,))
  assert float(hessian.batch_loss(model)(params, stats, x, y, w)) == (
      pytest.approx(float(step(params, stats, x, y, w)['loss'])))


def test_curvature_through_bn_is_the_recalibrated_curves_bend(x64):
  """vᵀH̃v with the statistics recomputed from θ equals the second
  difference of the curve λ ↦ L(θ + λv, recal(θ + λv)) that a recalibrating
  sweep draws (central differences; the recalibration computes its
  statistics in float32, so h = 1e-2 and 2%), and the exact Hessian of that
  composed function (reverse-over-reverse, 1e-5); holding the statistics
  fixed gives another number."""
  model, params, stats, x, y, data = _problem(True)
  f = _ce64(model)
  recal_x = jnp.asarray(np.random.default_rng(2).normal(size=(3, 6, 4)))

  def stats_fn(p):
    return sweep.recalibrate(model, p, stats, recal_x, dtype=jnp.float64)

  flat, unravel = flatten_util.ravel_pytree(params)
  v = unravel(jnp.asarray(np.random.default_rng(1).normal(size=flat.size)))

  def curve(lam):
    p = jax.tree.map(lambda a, b: a + lam * b, params, v)
    return float(hessian.loss(f, p, stats_fn(p), data))

  h = 1e-2
  second = (curve(h) - 2 * curve(0.0) + curve(-h)) / h ** 2
  got = float(jax.jit(lambda p, v: hessian.quadratic_form_through(
      f, stats_fn, p, v, data))(params, v))
  np.testing.assert_allclose(got, second, rtol=2e-2)
  composed = jax.hessian(lambda fl: hessian.loss(
      f, unravel(fl), stats_fn(unravel(fl)), data))(flat)
  vf = _flat(v)
  np.testing.assert_allclose(got, vf @ np.asarray(composed) @ vf, rtol=1e-5)
  fixed = float(hessian.quadratic_form(f, params, stats_fn(params), v, data))
  assert abs(fixed - got) > 0.05 * abs(got)
  # Hutchinson with stats_fn averages the same quadratic forms.
  key = jax.random.key(3)
  tr, _ = hessian.hutchinson(f, params, stats, key, data, 4, stats_fn=stats_fn)
  probes = hessian.rademacher(key, params, 4)
  each = [hessian.quadratic_form_through(
      f, stats_fn, params, jax.tree.map(lambda a: a[i], probes), data)
          for i in range(4)]
  np.testing.assert_allclose(tr, np.mean(each), rtol=1e-6)


@pytest.mark.slow
def test_slq_is_a_gauss_quadrature_of_the_probes_measure(x64):
  """Each probe's nodes and weights integrate λ^p exactly for p < 2·steps:
  Σ_i w_i θ_i^p = vᵀHᵖv/‖v‖², by numpy from jax.hessian; the top node is
  H's top eigenvalue."""
  model, params, stats, x, y, data = _problem(False)
  f = _ce64(model)
  hess, _, _ = _hessian(f, params, stats, x, y)
  eigs = np.linalg.eigvalsh(hess)
  c = hessian.make_curvature(model, loss_fn=f)
  key = jax.random.key(3)
  nodes, weights = c.slq(params, stats, key, data, 20, 2)
  probes = hessian.rademacher(key, params, 2)
  for k in range(2):
    v = _flat(jax.tree.map(lambda a, k=k: a[k], probes))
    v = v / np.linalg.norm(v)
    for power in range(7):
      want = v @ np.linalg.matrix_power(hess, power) @ v
      np.testing.assert_allclose(np.sum(weights[k] * nodes[k] ** power),
                                 want, rtol=1e-8, err_msg=f'p={power}')
  # Far fewer steps than parameters: the top node is H's top eigenvalue
  # (as `lanczos`'s top Ritz value, test above).
  np.testing.assert_allclose(nodes[:, -1], eigs[-1], rtol=1e-8)
  # The smoothed density integrates to 1.
  grid = np.linspace(eigs[0] - 1, eigs[-1] + 1, 4001)
  dens = hessian.density(nodes, weights, grid, 0.05)
  np.testing.assert_allclose(np.sum(dens) * (grid[1] - grid[0]), 1.0,
                             rtol=1e-6)
