"""configs/probe_fig3_reversal.py and a fact its finding rests on."""

import importlib.util

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from valley_jax import models
from valley_jax.probe import runner as probe_runner

_PATH = 'configs/probe_fig3_reversal.py'


def _config(arg=None):
  spec = importlib.util.spec_from_file_location('probe_fig3_reversal', _PATH)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module, module.get_config(arg)


def test_config_sweeps_the_four_non_centred_noises_and_g01():
  module, c = _config()
  assert c.kind == 'noise_types'
  assert set(c.noise_types.noises) == {'ones', 'uniform01', 'gaussian_mean1',
                                       'binary', 'gaussian'}
  assert 0.2 in c.noise_types.scales and c.seeds >= 3
  assert c.checkpoint == c.train_if_missing == 'runs/default'
  assert probe_runner.check_names(c)
  assert 'python probe.py --config=configs/probe_fig3_reversal.py' in (
      module.__doc__)
  assert 'python bench/fig3_reversal.py' in module.__doc__


@pytest.mark.parametrize('norm', ['filter', 'layer'])
def test_variant_sets_the_normalisation(norm):
  _, c = _config(norm)
  assert c.normalization == norm
  assert probe_runner.check_names(c)


def test_constant_shift_of_the_head_changes_no_prediction():
  """{1} on the classifier (kernel and bias) adds c·(Σh + 1) to every logit
  alike: the CLF group's err+ − err− is 0 whatever the model."""
  model = models.build_model('mlp', 10, hidden=(16, 16), bn=False)
  x = jax.random.normal(jax.random.key(0), (64, 12))
  params = model.init(jax.random.key(1), x, train=False)['params']
  logits = model.apply({'params': params}, x, train=False)
  for c in (-0.5, 0.5):
    shifted = dict(params, head=jax.tree.map(lambda w, c=c: w + c,
                                             params['head']))
    out = model.apply({'params': shifted}, x, train=False)
    np.testing.assert_array_equal(jnp.argmax(out, -1), jnp.argmax(logits, -1))
    spread = out - logits  # The same shift for every class of an example.
    np.testing.assert_allclose(spread, spread[:, :1] * jnp.ones((1, 10)),
                               rtol=1e-5, atol=1e-5)


def _bench():
  spec = importlib.util.spec_from_file_location('fig3_reversal_bench',
                                                'bench/fig3_reversal.py')
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def test_summary_interval_and_verdict_by_hand():
  """The bench's per-condition interval is the t interval over the
  replicates; one replicate flipping sign unresolves the verdict."""
  bench = _bench()
  d = np.array([0.02, 0.01, 0.015])
  v = bench.diff_verdict(d.tolist())
  half = 4.302653 * d.std(ddof=1) / np.sqrt(3)  # t(0.975, 2).
  np.testing.assert_allclose(v['diff_ci'], [0.015 - half, 0.015 + half],
                             rtol=1e-5)
  assert v['diff_resolved'] and v['diff_every_seed'] and v['diff_n'] == 3
  flipped = bench.diff_verdict([0.02, 0.01, -0.015])
  assert not flipped['diff_resolved'] and not flipped['diff_every_seed']
  rows = [{'kind': 'replicate', 'factor': 'f', 'condition': 'c',
           'noise': 'ones', 'scale': 0.2, 'group': 'ALL', 'seed': k,
           **{key: x for key in ('diff', 'ratio', 'positive_error',
                                 'negative_error', 'error_at_0', 'sc_diff',
                                 'frac_positive', 'cos_ones')}}
          for k, x in enumerate(d)]
  (line,) = bench.summarise(rows)
  assert line['diff'] == pytest.approx(0.015) and line['diff_resolved']
