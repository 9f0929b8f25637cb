"""Intervals and findings of the probe (issue 25): the per-example sweep, the
bootstrap against a plain numpy loop, verdicts that flip with the data, the
printed findings of any study and the results version."""

import logging

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import kinds_probe_config, load_json, patch_study_run

from valley_jax import models, sharding
from valley_jax.core import stats, sweep
from valley_jax.probe import runner as probe_runner
from valley_jax.probe.studies import common


def _bootstrap_by_hand(x_SxN, n_boot=2000, seed=0):
  """A hierarchical bootstrap of the mean, written as plainly as possible:
  per replicate, resample seeds, then examples (one index set for every
  seed), average."""
  rng = np.random.default_rng(seed)
  s, n = x_SxN.shape
  reps = []
  for _ in range(n_boot):
    seeds = rng.integers(0, s, s)
    examples = rng.integers(0, n, n)
    reps.append(np.mean([x_SxN[i, examples].mean() for i in seeds]))
  return np.percentile(reps, [2.5, 97.5])


def test_bootstrap_means_against_a_plain_loop():
  rng = np.random.default_rng(3)
  x = (rng.random((3, 40, 2)) < [0.2, 0.6]).astype(float)
  got = stats.bootstrap_means(x, n_boot=500)
  for k in range(2):
    np.testing.assert_allclose(got[k]['ci'],
                               _bootstrap_by_hand(x[..., k], 500), atol=1e-12)
    assert got[k]['mean'] == pytest.approx(x[..., k].mean())
    assert got[k]['std'] == pytest.approx(x[..., k].mean(1).std(ddof=1))
    assert got[k]['ci'] == stats.hierarchical_bootstrap(
        x[..., k], n_boot=500)['ci']
  # A mean that cannot leave [0, 1] keeps its interval inside.
  ones = np.ones((2, 10, 1))
  assert stats.bootstrap_means(ones, n_boot=50, bounds=[(0, 1)])[0]['ci'] == [
      1.0, 1.0]


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


def test_findings_of_any_study_print():
  by_seeds = stats.finding('a > b', stats.summary([0.2, 0.3, 0.25]))
  one = stats.finding('one run', stats.summary([0.1]), expect='nonzero')
  boot = stats.finding('x < 0', stats.hierarchical_bootstrap(
      -np.ones((2, 4)), n_boot=20), expect='negative', statistic='x')
  text = probe_runner.findings_table([by_seeds, one, boot])
  rows = text.splitlines()
  assert rows[1].startswith('resolved') and '[+0.126, +0.374]' in rows[1]
  assert rows[1].rstrip().endswith('a > b') and ' 3 ' in rows[1]
  assert rows[2].startswith('NOT resolved') and 'no interval' in rows[2]
  assert '2×4' in rows[3] and rows[3].endswith('x < 0 (x)')


@pytest.mark.slow
def test_results_of_another_version_are_recomputed(trained_mlp, tmp_path,
                                                   monkeypatch, caplog):
  calls = []

  def fake(p, s):
    del p, s
    calls.append(1)
    lams, c, _ = _curve(0.1, 0.4)
    return {'curves': [c], 'findings': [common.finding(
        'flatter', lams, [c], common.half_diff, expect='negative',
        statistic='err+ − err−')]}

  patch_study_run(monkeypatch, 'special', fake)
  c = kinds_probe_config(trained_mlp, 'special')
  path = probe_runner.run(c, str(tmp_path))['special']
  res = load_json(path)
  assert res['version'] == probe_runner.RESULTS_VERSION == 4
  assert res['findings'][0]['resolved'] and res['evaluation'][
      'one_example'] == pytest.approx(1 / 120)
  assert not any(k.startswith('_') for k in res['curves'][0])
  probe_runner.run(c, str(tmp_path))
  assert len(calls) == 1  # Reused.
  res['version'] = 3
  (tmp_path / 'special' / 'results.json').write_text(
      __import__('json').dumps(res))
  with caplog.at_level(logging.WARNING):
    probe_runner.run(c, str(tmp_path))
  assert len(calls) == 2 and 'earlier version' in caplog.text
