"""probe/studies/path_seeds.py: the paths study's aggregation over training
seeds and its verdicts, against hand computations."""

import numpy as np
import pytest
from scipy import stats as sp_stats

from valley_jax.probe.studies import path_seeds


def _run(trace, error, bend, norm_rel=(1.0, 1.2)):
  return {'epochs': [0, 1], 'workdir': 'w', 'trace_per_param': list(trace),
          'error': list(error), 'norm_rel': list(norm_rel),
          'curvature': [None, 0.5],
          'segment': {'lambdas': [0.0, 1.0], 'loss': [2.0, 0.1],
                      'error': [0.9, 0.02], 'bend': bend}}


def test_over_seeds_is_the_hand_mean_and_t_interval():
  runs = [_run([1e-3, 1e-4], [0.9, 0.02], 0.1),
          _run([2e-3, 2e-4], [0.8, 0.04], 0.3),
          _run([3e-3, 3e-4], [0.7, 0.03], 0.2)]
  e = path_seeds.over_seeds(runs)
  assert e['seeds'] == 3
  np.testing.assert_allclose(e['trace_per_param'], [2e-3, 2e-4])
  np.testing.assert_allclose(e['error'], [0.8, 0.03])
  # t interval by hand: mean ± t(0.975, 2)·s/√3, s = std of (.02, .04, .03).
  half = sp_stats.t.ppf(0.975, 2) * 0.01 / np.sqrt(3)
  np.testing.assert_allclose(e['ci']['error'][1], [0.03 - half, 0.03 + half])
  assert e['per_seed']['error'] == [[0.9, 0.02], [0.8, 0.04], [0.7, 0.03]]
  # An epoch without a value (curvature at epoch 0) stays undefined.
  assert e['curvature'] == [None, 0.5] and e['ci']['curvature'][0] is None
  assert e['end']['bend']['mean'] == pytest.approx(0.2)
  assert e['segment']['bend_per_seed'] == [0.1, 0.3, 0.2]


def test_one_seed_keeps_the_values_without_intervals():
  e = path_seeds.over_seeds([_run([1e-3, 1e-4], [0.9, 0.02], 0.1)])
  assert e['trace_per_param'] == [1e-3, 1e-4]
  assert e['ci']['error'] == [None, None] and e['end']['error']['ci'] is None


def _entries(trace_a, trace_b):
  a = path_seeds.over_seeds([_run([1.0, t], [0.5, 0.1], 0.0)
                             for t in trace_a])
  b = path_seeds.over_seeds([_run([1.0, t], [0.5, 0.1], 0.0)
                             for t in trace_b])
  return [dict(a, label='LR big', column='LR'),
          dict(b, label='LR small', column='LR')]


def _trace_finding(entries):
  (f,) = [f for f in path_seeds.column_findings(entries)
          if f['key'] == 'trace_per_param']
  return f


def test_paired_log_ratio_and_verdict_by_hand():
  f = _trace_finding(_entries([1e-4, 2e-4, 1e-4], [1e-3, 1e-3, 2e-3]))
  # Per seed log10(a / b): −1, log10(0.2), log10(0.05).
  d = np.log10([0.1, 0.2, 0.05])
  assert f['per_seed'] == pytest.approx(d.tolist())
  half = sp_stats.t.ppf(0.975, 2) * d.std(ddof=1) / np.sqrt(3)
  assert f['ci'] == pytest.approx([d.mean() - half, d.mean() + half])
  assert f['resolved'] and f['every_seed'] and f['rule'] == 'interval'


def test_verdict_flips_when_one_seed_reverses():
  f = _trace_finding(_entries([1e-4, 2e-4, 1e-2], [1e-3, 1e-3, 2e-3]))
  assert not f['resolved'] and not f['every_seed']


def test_seeds_with_different_epochs_are_refused():
  r = _run([1.0, 2.0], [0.5, 0.1], 0.0)
  with pytest.raises(ValueError, match='different epochs'):
    path_seeds.over_seeds([r, dict(r, epochs=[0, 2])])


def test_geometric_band_and_clipped_intervals():
  """Log axes draw 10^(mean ± t·s of log10); an error's interval stays in
  [0, 1]."""
  runs = [_run([1e-3, 1e-4], [0.9, 0.0], 0.1),
          _run([1e-1, 1e-2], [0.8, 0.0], 0.3),
          _run([1e-2, 1e-3], [0.7, 0.06], 0.2)]
  e = path_seeds.over_seeds(runs)
  g = e['geometric']['trace_per_param']
  assert g['mean'] == pytest.approx([1e-2, 1e-3])
  half = sp_stats.t.ppf(0.975, 2) * 1.0 / np.sqrt(3)  # std of (-3,-1,-2) = 1
  assert g['ci'][1] == pytest.approx([10 ** (-3 - half), 10 ** (-3 + half)])
  assert e['ci']['error'][1][0] == 0.0  # 0.02 − t·s/√3 < 0, clipped.
