"""probe/studies/align.py: barriers by hand, the findings' arithmetic, and
the kind end to end on two tiny pairs (BN and no BN) against a plain
evaluation of the aligned model."""

import jax
import ml_collections
import numpy as np
import pytest
from conftest import load_json, plain_loss_error, tiny_train_config

from valley_jax import checkpoint, data, defaults, models
from valley_jax.core import permute
from valley_jax.errors import InputError
from valley_jax.probe import runner as probe_runner
from valley_jax.probe.studies import align
from valley_jax.train import runner as train_runner


def test_barrier_is_the_largest_excess_over_the_chord():
  # Chord from 0.2 to 0.4: 0.25 at λ = 0.25, 0.3 at 0.5, 0.35 at 0.75.
  assert align.barrier([0, 0.25, 0.5, 0.75, 1], [0.2, 0.3, 0.7, 0.4, 0.4]) \
      == pytest.approx(0.4)
  assert align.barrier([0, 0.5, 1], [0.5, 0.2, 0.1]) == 0.0  # Convex.


def _row(setting, ssr, bar, ssr2, bar2):
  return {'setting': setting, 'recalibrated': setting == 'BN',
          'naive': {'ssr': ssr, 'barrier_error': bar},
          'aligned': {'ssr': ssr2, 'barrier_error': bar2}}


def test_findings_are_paired_differences_over_pairs():
  rows = [_row('no BN', 0.5, 0.30, 0.6, 0.10),
          _row('no BN', 0.5, 0.40, 0.62, 0.20),
          _row('no BN', 0.5, 0.20, 0.61, 0.05)]
  f = {x['claim']: x for x in align._findings(rows)}
  up = f['no BN: weight matching raises SSR(θA, θB)']
  assert up['per_seed'] == pytest.approx([0.1, 0.12, 0.11])
  # Mean 0.11 ± t(2) · 0.01 / √3 = ± 0.025: above 0.
  assert up['ci'] == pytest.approx([0.11 - 0.02484, 0.11 + 0.02484],
                                   abs=1e-4)
  assert up['resolved']
  down = f['no BN: weight matching lowers the error barrier '
           '(no recalibration)']
  assert down['per_seed'] == pytest.approx([-0.2, -0.2, -0.15])
  assert down['resolved']
  slope = f['no BN: higher sign consistency goes with a lower barrier']
  assert slope['per_seed'] == pytest.approx([-2.0, -0.2 / 0.12,
                                             -0.15 / 0.11])
  assert slope['n'] == 3


def test_odd_number_of_runs_is_refused():
  c = defaults.probe_config('')
  c.align.checkpoints = ('a', 'b', 'c')
  with pytest.raises(InputError, match='even'):
    align._validate(c)


@pytest.fixture(scope='module')
def pairs(tmp_path_factory):
  """Two pairs of 1-epoch MLP runs (seeds 0/1): with BN and without."""
  out = []
  for bn in (True, False):
    for seed in (0, 1):
      c = tiny_train_config(epochs=1, bn=bn)
      c.data.n_train, c.seed = 128, seed
      out.append(str(tmp_path_factory.mktemp(f'bn{bn}_s{seed}')))
      train_runner.run(c, out[-1])
  return out


@pytest.mark.slow
def test_align_kind_measures_the_aligned_model(pairs, tmp_path):
  c = defaults.probe_config('')
  c.kind = 'align'
  c.align.checkpoints = tuple(pairs)
  c.align.num_points = 3
  c.sweep.update(recal_samples=200, recal_batch_size=200,
                 eval_batch_size=360)
  res = load_json(probe_runner.run(c, str(tmp_path / 'p'))['align'])
  bn, plain = res['pairs']
  assert (bn['setting'], plain['setting']) == ('BN', 'no BN')
  assert 'stats_interpolated' in bn['naive']
  assert 'stats_interpolated' not in plain['naive']
  for row in (bn, plain):
    for state in align.STATES:
      s = row[state]
      assert s['barrier_error'] == pytest.approx(
          align.barrier(res['lambdas'], s['error']))
    # Matching only moves θB closer (identity is where it starts), and the
    # aligned θB is θB's function: the same error at λ = 1, θA at λ = 0.
    assert row['aligned']['distance'] <= row['naive']['distance'] + 1e-6
    assert row['aligned']['error'][-1] == pytest.approx(
        row['naive']['error'][-1], abs=1.5 / 360)
    assert row['aligned']['error'][0] == row['naive']['error'][0]
  # The no-BN midpoint of the aligned line, evaluated by plain NumPy.
  (va, cfg), (vb, _) = (checkpoint.restore_model(w) for w in pairs[2:])
  ds = data.from_config(ml_collections.ConfigDict(cfg['data']))
  model = models.from_config(ml_collections.ConfigDict(cfg['model']),
                             ds.num_classes, ds.input_shape)
  vb2, _ = permute.align(model, va, vb, seed=c.align.seed)
  mid = jax.tree.map(lambda a, b: 0.5 * a + 0.5 * b, va['params'],
                     vb2['params'])
  loss, err = plain_loss_error(model, mid, ds.x_test, ds.y_test)
  np.testing.assert_allclose(plain['aligned']['loss'][1], loss, rtol=2e-4)
  assert abs(plain['aligned']['error'][1] - err) <= 1.5 / len(ds.y_test)
  claims = [f['claim'] for f in res['findings']]
  assert 'BN: weight matching raises SSR(θA, θB)' in claims
  assert all(f['n'] == 1 for f in res['findings'])
  assert (tmp_path / 'p' / 'align' / 'figure.png').exists()


def _np_ssr(x, y):
  """The fraction of elements of two trees with the same sign (0 as +)."""
  fx = np.concatenate([np.ravel(a) for a in jax.tree.leaves(x)])
  fy = np.concatenate([np.ravel(a) for a in jax.tree.leaves(y)])
  return float(np.mean((fx >= 0) == (fy >= 0)))


@pytest.mark.slow
def test_interpolate_and_soups_align_option(pairs, tmp_path):
  """config.interpolate.align and config.soups.align on the no-BN pair:
  the extra line ends at θB's function, and the soups' SSRs are those of θA
  with the permuted θB (numpy, from permute.align)."""
  wa, wb = pairs[2:]
  c = defaults.probe_config('')
  c.kind = 'interpolate,soups'
  c.interpolate.update(checkpoint_a=wa, checkpoint_b=wb, lam_min=0.0,
                       lam_max=1.0, num_points=3, align=True)
  c.soups.update(checkpoint_a=wa, checkpoint_b=wb, num_points=3, align=True)
  c.sweep.eval_batch_size = 360
  paths = probe_runner.run(c, str(tmp_path))
  res = load_json(paths['interpolate'])
  naive, aligned = res['curves']
  assert aligned['aligned'] and aligned['label'] == 'θA → π(θB)'
  assert aligned['error'][0] == naive['error'][0]
  assert aligned['error'][-1] == pytest.approx(naive['error'][-1],
                                               abs=1.5 / 360)
  al = res['alignment']
  assert al['barrier_error_aligned'] == pytest.approx(
      align.barrier(aligned['lambdas'], aligned['error']))
  assert al['distance_aligned'] <= al['distance_naive'] + 1e-6
  (va, cfg), (vb, _) = (checkpoint.restore_model(w) for w in (wa, wb))
  ds = data.from_config(ml_collections.ConfigDict(cfg['data']))
  model = models.from_config(ml_collections.ConfigDict(cfg['model']),
                             ds.num_classes, ds.input_shape)
  vb2, _ = permute.align(model, va, vb)
  assert al['ssr_naive'] == pytest.approx(_np_ssr(va['params'],
                                                  vb['params']), abs=1e-6)
  assert al['ssr_aligned'] == pytest.approx(_np_ssr(va['params'],
                                                    vb2['params']), abs=1e-6)
  soups = load_json(paths['soups'])
  va1, _ = checkpoint.restore_model(wa, 1)
  vb1, _ = checkpoint.restore_model(wb, 1)
  vb1p, _ = permute.align(model, va1, vb1)
  assert soups['soups'][0]['ssr_ab'] == pytest.approx(
      _np_ssr(va1['params'], vb1p['params']), abs=1e-6)
