"""probe/studies/common.py: the compiled direction builders against their
plain composition, one trace per mode."""

import jax
import numpy as np
import pytest

from valley_jax import defaults
from valley_jax.core import directions, groups, normalize, tree
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
