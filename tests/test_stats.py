"""core/stats: intervals against closed forms, verdicts that flip."""

import math

import numpy as np
import pytest
from conftest import bootstrap_by_hand as _bootstrap_by_hand

from valley_jax.core import stats


def test_summary_matches_student_t_by_hand():
  s = stats.summary([1.0, 2.0, 3.0, 4.0, 5.0])
  # std = sqrt(10 / 4); t(0.975, 4) = 2.776445 from tables.
  half = 2.776445 * math.sqrt(2.5) / math.sqrt(5)
  assert s['n'] == 5 and s['mean'] == 3.0
  assert s['std'] == pytest.approx(math.sqrt(2.5))
  assert s['ci'] == pytest.approx([3 - half, 3 + half], abs=1e-5)


def test_summary_clips_to_bounds_and_refuses_nan():
  s = stats.summary([0.99, 1.0, 0.98], bounds=(0.0, 1.0))
  assert s['ci'][1] == 1.0
  with pytest.raises(ValueError, match='finite'):
    stats.summary([0.5, float('nan')])


def test_bootstrap_one_seed_is_the_binomial_interval():
  rng = np.random.default_rng(1)
  x = (rng.random((1, 4000)) < 0.3).astype(float)
  p = x.mean()
  b = stats.hierarchical_bootstrap(x, n_boot=1000)
  half = 1.96 * math.sqrt(p * (1 - p) / 4000)
  assert b['mean'] == pytest.approx(p)
  assert b['ci'] == pytest.approx([p - half, p + half], abs=0.003)
  assert b['resolution'] == 1 / 4000 and b['std'] is None


def test_bootstrap_many_seeds_is_the_normal_interval_over_seeds():
  rng = np.random.default_rng(2)
  per_seed = rng.normal(1.0, 0.5, 400)
  x = np.repeat(per_seed[:, None], 3, axis=1)  # no spread over examples
  b = stats.hierarchical_bootstrap(x, n_boot=2000)
  half = 1.96 * per_seed.std(ddof=1) / math.sqrt(400)
  assert b['ci'] == pytest.approx(
      [per_seed.mean() - half, per_seed.mean() + half], abs=0.1 * half)


def test_bootstrap_custom_statistic_shares_examples_across_seeds():
  # Two seeds with opposite per-example values: every replicate resamples
  # the same examples for both, so their mean is exactly 0 each time.
  e = np.array([[1.0, -1.0, 2.0, 0.5], [-1.0, 1.0, -2.0, -0.5]])
  b = stats.hierarchical_bootstrap(e[:, :, None], n_boot=300,
                                   stat=lambda x: x.mean(1).max(-1))
  assert b['per_seed'] == pytest.approx([0.625, -0.625])
  assert b['mean'] == 0.0
  assert b['ci'][0] <= 0 <= b['ci'][1]


def test_verdict_flips_when_the_statistic_moves():
  base = np.array([0.20, 0.25, 0.30])
  assert stats.finding('a', stats.summary(base))['resolved']
  f = stats.finding('a', stats.summary(base - 0.25))
  assert not f['resolved'] and stats.verdict(f) == 'not resolved at n = 3'
  assert stats.finding('a', stats.summary(-base), expect='negative')[
      'resolved']
  assert not stats.finding('a', stats.summary(base), expect='negative')[
      'resolved']
  assert stats.finding('a', stats.summary(-base), expect='nonzero')[
      'resolved']


def test_every_seed_rule():
  s = stats.summary([0.01, 0.5, 0.02])
  assert stats.finding('a', s, rule='every_seed')['resolved']
  s = stats.summary([0.01, -0.001, 0.02])
  assert not stats.finding('a', s, rule='every_seed')['resolved']
  assert not stats.finding('a', stats.summary([0.3]), rule='every_seed')[
      'resolved']


def test_single_seed_without_examples_is_never_resolved():
  f = stats.finding('a', stats.summary([0.7]))
  assert f['ci'] is None and not f['resolved']
  assert 'no interval' in stats.describe(f)


def test_bad_arguments_are_refused():
  with pytest.raises(ValueError, match='expect'):
    stats.finding('a', stats.summary([1.0, 2.0]), expect='up')
  with pytest.raises(ValueError, match='seeds, examples'):
    stats.hierarchical_bootstrap(np.zeros(3))




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
