"""probe/studies/common.py: the compiled direction builders against their
plain composition, one trace per mode; per-example errors against a forward
pass, curve intervals against a numpy bootstrap, verdicts that flip."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import bootstrap_by_hand as _bootstrap_by_hand

from valley_jax import defaults, models, sharding
from valley_jax.core import directions, groups, normalize, stats, sweep, tree
from valley_jax.probe import prober
from valley_jax.probe import runner as probe_runner
from valley_jax.probe.studies import common


def _prober_and_subject(workdir):
  c = defaults.probe_config(workdir)
  c.sweep.num_points = 3
  c.sweep.recal_samples = 200
  c.sweep.recal_batch_size = 200
  p = prober.Prober(c)
  return p, p.subject(workdir)


def _eager(p, s, seed, noise, sc, group='ALL', norm='ns'):
  """The uncompiled composition the builder replaces."""
  key = directions.direction_key(p.root, seed,
                                 list(directions.NOISES).index(noise))
  eps = directions.sample(noise, key, s.params)
  if sc:
    eps = directions.sign_consistent(eps, s.params)
  mask = groups.mask(s.params, group)
  return normalize.normalize(tree.masked(eps, mask),
                             tree.masked(s.params, mask), norm)


def _assert_trees_close(a, b, rtol=1e-6):
  jax.tree.map(lambda x, y: np.testing.assert_allclose(
      np.asarray(x), np.asarray(y), rtol=rtol, atol=1e-7), a, b)


@pytest.mark.slow
def test_directions_compile_once_per_study(trained_mlp):
  """Every noise, seed and sign choice reuses one executable per mode."""
  p, s = _prober_and_subject(trained_mlp)
  common._noise_direction.clear_cache()  # pylint: disable=protected-access
  common._special_direction.clear_cache()  # pylint: disable=protected-access
  before = dict(common.TRACES)
  for seed in range(3):
    for noise in directions.NOISES:
      for sc in (False, True):
        common.make_direction(p, s, seed, noise=noise, sign_consistent=sc)
  for r in (0.0, 0.3, 1.0):
    common.make_direction(p, s, 0, noise='gaussian', ratio=r)
  for name in directions.SPECIAL:
    common.make_direction(p, s, 0, special=name)
  # 42 noise directions, plain and sign-consistent, 3 ratios: one trace;
  # 6 special directions: one trace.
  assert common.TRACES['noise'] - before['noise'] == 1
  assert common.TRACES['special'] - before['special'] == 1
  # Another group is another mask argument, not another trace.
  common.make_direction(p, s, 0, noise='gaussian', group='CLF')
  assert common.TRACES['noise'] - before['noise'] == 1


@pytest.mark.slow
@pytest.mark.parametrize('noise,sc,group,norm', [
    ('gaussian', False, 'ALL', 'ns'), ('ternary', True, 'ALL', 'ns'),
    ('uniform01', True, 'BN', 'ns'), ('ones', False, 'CLF', 'ns'),
    ('gaussian', True, 'FEAT', 'filter'), ('binary', False, 'ALL', 'layer')])
def test_compiled_direction_equals_eager(trained_mlp, noise, sc, group, norm):
  p, s = _prober_and_subject(trained_mlp)
  got = common.make_direction(p, s, 2, noise=noise, sign_consistent=sc,
                              group=group, normalization=norm)
  _assert_trees_close(got, _eager(p, s, 2, noise, sc, group, norm),
                      rtol=2e-6)


@pytest.mark.slow
def test_ratio_zero_and_one_are_plain_and_sign_consistent(trained_mlp):
  """r = 0 chooses no element and r = 1 every one (Bernoulli(0), (1))."""
  p, s = _prober_and_subject(trained_mlp)
  for r, sc in ((0.0, False), (1.0, True)):
    got = common.make_direction(p, s, 1, noise='gaussian', ratio=r)
    _assert_trees_close(got, _eager(p, s, 1, 'gaussian', sc))


@pytest.mark.slow
def test_special_directions_compiled_by_hand(trained_mlp):
  p, s = _prober_and_subject(trained_mlp)
  for name in directions.SPECIAL[1:]:
    got = common.make_direction(p, s, 0, special=name, normalization='none')
    _assert_trees_close(got, directions.special(name, s.params), rtol=1e-5)
  sign = common.make_direction(p, s, 0, special='sign', normalization='none')
  _assert_trees_close(sign, tree.sign(s.params))
  theta = common.make_direction(p, s, 0, special='theta', normalization='ns')
  _assert_trees_close(theta, s.params, rtol=1e-5)  # ||θ|| / ||θ|| = 1.


@pytest.mark.slow
def test_kinds_use_the_compiled_builders(trained_mlp, tmp_path):
  """A whole noise_types run builds its directions in one trace per mode."""
  c = defaults.probe_config(trained_mlp)
  c.kind = 'noise_types'
  c.sweep.num_points = 3
  c.sweep.recal_samples = 200
  c.noise_types.scales = (1.0, 2.0)
  c.seeds = 2
  common._noise_direction.clear_cache()  # pylint: disable=protected-access
  before = common.TRACES['noise']
  probe_runner.run(c, str(tmp_path))
  assert common.TRACES['noise'] - before == 1  # 56 directions, 1 trace.


# ------------------------------------------------ intervals and findings




def _curve(pos_rate, neg_rate, seeds=3, n=120, seed=0):
  """A synthetic 5-point curve: each example's error on the positive side
  (λ > 0) and the negative side (λ < 0) drawn at the given rates; λ = 0 is
  error-free."""
  rng = np.random.default_rng(seed)
  lams = np.linspace(-1, 1, 5)
  rate = np.where(lams > 0, pos_rate, np.where(lams < 0, neg_rate, 0.0))
  e = (rng.random((seeds, n, 5)) < rate).astype(float)
  return lams, common.curve('c', 'p', lams, e.mean(1), e.mean(1),
                            error_SxNxP=e), e


def test_curve_intervals_against_numpy():
  lams, c, e = _curve(0.1, 0.4)
  pos = e[..., lams >= 0].mean(-1)
  neg = e[..., lams <= 0].mean(-1)
  np.testing.assert_allclose(c['diff']['ci'], _bootstrap_by_hand(pos - neg),
                             atol=1e-12)
  np.testing.assert_allclose(c['positive_error_ci'], _bootstrap_by_hand(pos),
                             atol=1e-12)
  np.testing.assert_allclose(c['negative_error_ci'], _bootstrap_by_hand(neg),
                             atol=1e-12)
  assert c['diff']['mean'] == pytest.approx(c['positive_error'] -
                                            c['negative_error'])
  assert c['diff']['n'] == 3 and c['n_examples'] == 120
  # λ = 0 is error-free in every example: its interval is [0, 0].
  assert c['error_ci'][2] == [0.0, 0.0]
  assert all(0.0 <= lo <= hi <= 1.0 for lo, hi in c['error_ci'])


def test_verdict_flips_when_the_statistic_is_perturbed():
  lams, flat, _ = _curve(0.1, 0.4)
  f = common.finding('positive side flatter', lams, [flat], common.half_diff,
                     expect='negative', statistic='err+ − err−')
  assert f['resolved'] and f['ci'][1] < 0
  assert stats.verdict(f) == 'resolved'
  # The same data with the positive side as sharp as the negative one.
  lams, same, _ = _curve(0.4, 0.4)
  f = common.finding('positive side flatter', lams, [same], common.half_diff,
                     expect='negative', statistic='err+ − err−')
  assert not f['resolved'] and f['ci'][0] < 0 < f['ci'][1]
  assert stats.verdict(f) == 'not resolved at n = 3 seeds × 120 examples'
  # Reversed: resolved as a difference, not as the claim's sign.
  lams, rev, _ = _curve(0.4, 0.1)
  assert not common.finding('flatter', lams, [rev], common.half_diff,
                            expect='negative', statistic='')['resolved']
  assert common.finding('differ', lams, [rev], common.half_diff,
                        expect='nonzero', statistic='')['resolved']


@pytest.mark.parametrize('devices', [None, 0])
def test_per_example_errors_match_a_forward_pass(devices):
  """The sweep vmapped over one-hot weights gives each example's 0/1 error
  at each point: that of a plain forward pass with the recalibrated BN
  statistics, and their mean is the sweep's error."""
  model = models.build_model('mlp', 3, hidden=(8,), bn=True)
  x = np.random.default_rng(0).normal(size=(24, 5)).astype(np.float32)
  y = np.arange(24) % 3
  v = model.init(jax.random.key(0), x[:2])
  d = jax.tree.map(lambda a: jax.random.normal(jax.random.key(1), a.shape),
                   v['params'])
  mesh = None if devices is None else sharding.make_mesh(devices)
  data = sweep.make_batches(x, y, 8, mesh)
  recal_x = sweep.make_recal_batches(x, 16, 8, mesh)
  fn = sweep.make_sweep(model, recal=True, mesh=mesh)
  setting = sweep.Setting(fn, data, recal_x, mesh)
  coeffs = np.array([[-1.0], [0.0], [0.5]], np.float32)
  out = common.per_example(setting, v['params'], v['batch_stats'], [d],
                           coeffs)
  assert out['error_NxP'].shape == (24, 3) and out['n'] == 24
  for j, (c,) in enumerate(coeffs):
    p = jax.tree.map(lambda a, b: a + c * b, v['params'], d)
    bs = sweep.recalibrate(model, p, v['batch_stats'],
                           jnp.asarray(x[:16].reshape(2, 8, 5)))
    logits = model.apply({'params': p, 'batch_stats': bs}, x, train=False)
    wrong = (np.asarray(logits).argmax(-1) != y).astype(float)
    np.testing.assert_array_equal(out['error_NxP'][:, j], wrong)
  plain = setting(v['params'], v['batch_stats'], [d], coeffs)
  np.testing.assert_allclose(out['error'], plain['error'], atol=1e-6)
  np.testing.assert_allclose(out['loss'], plain['loss'], rtol=1e-5)


def test_streamed_data_keep_means_only():
  """Data streamed from the host (HostBatches) have no per-example errors:
  the means are the sweep's, the curve has no interval and a finding on it
  is None (the runner drops it)."""
  model = models.build_model('mlp', 3, hidden=(4,), bn=False)
  x = np.random.default_rng(0).normal(size=(10, 5)).astype(np.float32)
  y = np.arange(10) % 3
  v = model.init(jax.random.key(0), x[:2])
  data = sweep.make_batches(x, y, 4, stream=1)
  setting = sweep.Setting(sweep.make_sweep(model), data, None)
  coeffs = np.array([[-1.0], [0.0], [1.0]], np.float32)
  out = common.per_example(setting, v['params'], {}, [v['params']], coeffs)
  assert out['error_NxP'] is None and out['n'] is None
  np.testing.assert_allclose(
      out['error'], setting(v['params'], {}, [v['params']], coeffs)['error'])
  c = common.curve('c', 'p', [-1.0, 0.0, 1.0], out['loss'], out['error'])
  assert 'diff' not in c and common.PER_EXAMPLE not in c
  assert common.finding('x', c['lambdas'], [c], common.half_diff,
                        expect='negative', statistic='') is None
