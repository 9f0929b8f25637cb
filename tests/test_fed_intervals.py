"""fed/intervals.py and the per-example evaluation behind it: a table's
intervals over seeds and test images, its verdicts, the stored file."""

import flax.linen as nn
import jax
import numpy as np
import pytest

from conftest import bootstrap_by_hand as _bootstrap_by_hand
from valley_jax import defaults, sharding
from valley_jax.core import steps
from valley_jax.fed import intervals
from valley_jax.fed import runner as fed_runner


class _Linear(nn.Module):

  @nn.compact
  def __call__(self, x, train: bool = False):
    del train
    return nn.Dense(3)(x)


def test_per_example_mean_is_the_evaluated_accuracy():
  # 37 examples in batches of 16: the padding of the last batch is dropped
  # and the mean of the 0/1 vector is evaluate's accuracy, exactly.
  model = _Linear()
  rng = np.random.default_rng(0)
  x = rng.normal(size=(37, 5)).astype(np.float32)
  y = rng.integers(0, 3, 37).astype(np.int32)
  params = model.init(jax.random.key(0), x[:1])['params']
  mesh = sharding.make_mesh(1)
  mean, std = np.zeros(5), np.ones(5)
  # Not jitted: op by op, the test compiles nothing.
  ev = steps.evaluate(steps.make_eval_step(model, mean, std), mesh, params,
                      {}, x, y, 16)
  per = steps.evaluate_per_example(steps.make_per_example_step(
      model, mean, std), mesh, params, {}, x, y, 16)
  logits = np.asarray(model.apply({'params': params}, x))
  np.testing.assert_array_equal(per['correct'], logits.argmax(1) == y)
  assert per['correct'].mean() == ev['accuracy']
  assert per['loss'].mean() == pytest.approx(ev['loss'], rel=1e-6)


def test_cell_interval_is_the_bootstrap_by_hand():
  rng = np.random.default_rng(1)
  x_SxN = (rng.random((5, 60)) < np.linspace(0.6, 0.9, 5)[:, None]
           ).astype(np.float64)
  got = intervals.cell_interval(list(x_SxN))
  np.testing.assert_allclose(got['ci'], _bootstrap_by_hand(x_SxN))
  assert got['mean'] == pytest.approx(x_SxN.mean())
  assert got['resolution'] == 1 / 60
  assert intervals.cell_interval([x_SxN[0], None]) is None


def _runs(algorithm, correct_SxN):
  """Table cell records of one algorithm at α = 0.5 with per-example
  correctness (final = last = pooled view)."""
  out = []
  for s, c in enumerate(correct_SxN):
    acc = float(c.mean())
    out.append({'algorithm': algorithm, 'alpha': 0.5, 'point': {}, 'seed': s,
                'final': {'test_accuracy': acc, 'val_accuracy': acc,
                          'pooled_recal_test_accuracy': acc},
                'curve': {'round': [1], 'test_accuracy': [acc],
                          'val_accuracy': [acc]},
                'held_out': 144,
                'per_example': {v: c for v in intervals.VIEWS}})
  return out


def _fedsign_ahead(more: tuple[int, ...], accuracy: float, seed: int):
  """A FedAvg/FedSign table over 5 seeds at α = 0.5 whose FedSign is right
  on `more[s]` more of the 360 images than FedAvg in seed s: (config,
  FedAvg's and FedSign's 0/1 correctness [5, 360], the summary)."""
  c = defaults.fed_offline('digits', 'table,fedavg,fedsign,alpha0.5')
  c.table.update(seeds=(0, 1, 2, 3, 4), grids={})
  rng = np.random.default_rng(seed)
  base = (rng.random((5, 360)) < accuracy).astype(np.float64)
  mine = base.copy()
  for s, k in enumerate(more):
    mine[s, np.flatnonzero(base[s] == 0)[:k]] = 1.0
  out = fed_runner.summarize(c, _runs('fedavg', base) +
                             _runs('fedsign', mine))
  return c, base, mine, out


def test_a_verdict_flips_when_one_seeds_images_change():
  # FedSign is right on 12 more images than FedAvg in every seed: the
  # paired bootstrap over seeds and images resolves it. Then seed 2 loses
  # 60 images: its interval covers 0, not resolved.
  c, base, mine, out = _fedsign_ahead((12,) * 5, 0.8, seed=2)
  final = out['findings'][0]
  assert final['claim'] == 'fedsign > fedavg at α = 0.5'
  assert final['method'].startswith('hierarchical bootstrap over 5 seeds')
  assert final['resolved'] and final['mean'] == pytest.approx(12 / 360)
  np.testing.assert_allclose(final['ci'], _bootstrap_by_hand(mine - base))
  assert 't_over_seeds' in final
  assert out['rows'][0]['fedsign']['intervals']['final']['ci'] == (
      pytest.approx(list(_bootstrap_by_hand(mine))))
  assert 'hierarchical bootstrap over seeds and test images' in (
      fed_runner.markdown(out))
  worse = mine.copy()
  worse[2, np.flatnonzero(mine[2] == 1)[:60]] = 0.0
  out = fed_runner.summarize(c, _runs('fedavg', base) +
                             _runs('fedsign', worse))
  assert not out['findings'][0]['resolved']
  assert 'per_example' not in out['cells'][0]  # Kept out of table.json.


def test_a_difference_that_one_seed_carries_is_not_resolved():
  # FedSign is right on 4-5 more images than FedAvg in seeds 0-3 and on 60
  # more in seed 4. Every seed is positive, so the bootstrap over 5 seeds
  # and the images lies above 0; the t interval over seeds (mean 15.6, std
  # 24.7 images) covers 0. The verdict needs both: not resolved.
  _, _, _, out = _fedsign_ahead((4, 5, 4, 5, 60), 0.75, seed=3)
  final = out['findings'][0]
  assert final['ci'][0] > 0 and final['bootstrap_resolved']
  assert final['t_over_seeds']['ci'][0] < 0
  assert not final['resolved']
  assert 'not resolved at n = 5' in fed_runner.markdown(out)


def test_stored_views_and_a_file_of_another_model(tmp_path):
  w = str(tmp_path)
  assert intervals.window(7, 3, 2) == [6, 7]
  for r, bits in ((1, [1, 0, 0, 1]), (2, [1, 1, 0, 1]), (3, [0, 1, 1, 1])):
    intervals.save_round(w, r, bits)
  intervals.save_pooled(w, 3, 'abc', [1, 1, 1, 0], 0.75, 0.5)
  v = intervals.views(w, [2, 3])
  np.testing.assert_array_equal(v['final'], [0, 1, 1, 1])
  np.testing.assert_array_equal(v['last'], [0.5, 1, 0.5, 1])
  np.testing.assert_array_equal(v['pooled_recal'], [1, 1, 1, 0])
  assert intervals.pooled(w, 3, 'abc')['accuracy'] == 0.75
  assert intervals.pooled(w, 3, 'other model') is None
  assert set(intervals.views(w, [3, 4])) == set()  # Round 4 not stored.
  assert set(intervals.views(w, [0, 3])) == {'final', 'pooled_recal'}
  with pytest.raises(ValueError, match='0/1'):
    intervals.save_round(w, 4, [0.5, 1, 1, 1])
