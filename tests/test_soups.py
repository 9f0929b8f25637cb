"""Model soups (Fig. 11, probe/studies/soups.py): the SSRs, the gain, the
kind end to end and its finding."""

import doctest
import json

import jax
import numpy as np
import pytest
from conftest import half_train_config as _tiny

from valley_jax import checkpoint, defaults, rundir
from valley_jax.probe import runner as probe_runner
from valley_jax.probe.studies import soups
from valley_jax.train import runner as train_runner


def _probe(a, b, init=''):
  c = defaults.probe_config()
  c.kind = 'soups'
  c.soups.update(checkpoint_a=a, checkpoint_b=b, init=init, num_points=3)
  c.sweep.update(recal_samples=200, recal_batch_size=200, eval_batch_size=360)
  return c


def _load(path):
  with open(path) as f:
    return json.load(f)


# -------------------------------------------------------------- the measures


def _np_ssr(x, y):
  """Plain numpy: sign with 0 -> +1 (tree.sign), over all leaves."""
  fx = np.concatenate([np.ravel(v) for v in jax.tree.leaves(x)])
  fy = np.concatenate([np.ravel(v) for v in jax.tree.leaves(y)])
  return float(np.mean(np.where(fx >= 0, 1, -1) == np.where(fy >= 0, 1, -1)))


def test_ssr_definitions_match_numpy():
  # Hand-made: 8 elements in two leaves. θA flips 2 of θI's signs, θB 4.
  ti = {'l1': {'w': np.array([1., -1, 2, -2]), 'b': np.array([0.5, -0.5])},
        'l2': {'w': np.array([3., -3])}}
  ta = {'l1': {'w': np.array([1., 1, 2, -2]), 'b': np.array([0.5, 0.5])},
        'l2': {'w': np.array([3., -3])}}
  tb = {'l1': {'w': np.array([-1., -1, -2, -2]), 'b': np.array([-0.5, -0.5])},
        'l2': {'w': np.array([3., 3])}}
  got = soups.ssr_triplet(ti, ta, tb)
  assert got['ssr_ia'] == 6 / 8 and got['ssr_ib'] == 4 / 8
  assert got['ssr_ab'] == _np_ssr(ta, tb)
  upd = jax.tree.map(np.subtract, ta, ti), jax.tree.map(np.subtract, tb, ti)
  assert got['ssr_updates_ab'] == _np_ssr(*upd)
  rng = np.random.default_rng(0)
  trees = [{'a': rng.normal(size=(3, 4)).astype(np.float32),
            'b': {'c': rng.normal(size=5).astype(np.float32)}}
           for _ in range(3)]
  got = soups.ssr_triplet(*trees)
  assert got['ssr_ia'] == pytest.approx(_np_ssr(trees[0], trees[1]))
  assert got['ssr_ib'] == pytest.approx(_np_ssr(trees[0], trees[2]))
  assert got['ssr_ab'] == pytest.approx(_np_ssr(trees[1], trees[2]))
  assert got['ssr_updates_ab'] == pytest.approx(_np_ssr(
      jax.tree.map(np.subtract, trees[1], trees[0]),
      jax.tree.map(np.subtract, trees[2], trees[0])))


def test_gain_formula_and_lambdas():
  assert soups.soup_gain(0.8, 0.6, 0.9) == pytest.approx(0.2)
  assert soups.soup_gain(0.8, 0.6, 0.5) == pytest.approx(-0.2)
  curve = {'lambdas': [0.0, 0.25, 0.5, 0.75, 1.0],
           'error': [0.2, 0.3, 0.1, 0.3, 0.4]}
  t = {'w': np.ones(2)}
  row = soups.epoch_row(3, curve, t, t, t)
  assert (row['acc_a'], row['acc_soup'], row['acc_b']) == pytest.approx(
      (0.8, 0.9, 0.6))
  assert row['gain'] == pytest.approx(0.2) and row['ssr_ab'] == 1.0
  c = defaults.probe_config().soups
  c.update(lam_min=0.1, lam_max=0.9, num_points=2)
  assert soups.lambdas(c).tolist() == [0.0, 0.1, 0.5, 0.9, 1.0]


def test_docstring_examples():
  for module in (soups, rundir):
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0


# ------------------------------------------------------------------ the kind


def _train_pairs(tmp_path):
  """θI pre-trained on half 1 (seed 1); A and B fine-tuned from it on halves
  0 and 1; and A from a fresh init (seed 0), independent of θI."""
  d = {k: str(tmp_path / k) for k in ('pre', 'ft_a', 'ft_b', 'rand_a')}
  train_runner.run(_tiny(1, seed=1), d['pre'])
  train_runner.run(_tiny(0, init_from=d['pre']), d['ft_a'])
  train_runner.run(_tiny(1, init_from=f"{d['pre']}@2"), d['ft_b'])
  train_runner.run(_tiny(0), d['rand_a'])
  return d


@pytest.mark.slow
def test_soups_end_to_end_and_the_finding(tmp_path, monkeypatch):
  """Schema, figure, provenance; then paper Fig. 11: from a shared
  pre-trained start SSR-AB is high and averaging does not hurt, from
  independent random starts (θA seed 0, θB = the seed-1 run) SSR-AB is near
  chance and the average loses accuracy."""
  runs = _train_pairs(tmp_path)
  res = _load(probe_runner.run(_probe(runs['ft_a'], runs['ft_b']),
                               str(tmp_path / 'ft'))['soups'])
  assert res['kind'] == 'soups' and res['model'] == 'mlp'
  assert [r['epoch'] for r in res['soups']] == [1, 2]
  assert [cv['epoch'] for cv in res['curves']] == [1, 2]
  theta_i = _params(runs['ft_a'], 0)
  for row, cv in zip(res['soups'], res['curves']):
    assert cv['lambdas'] == [0.0, 0.5, 1.0] and cv['direction'] == 'difference'
    e = cv['error']  # λ = 0 (θA), ½ (the soup), 1 (θB).
    assert (row['acc_a'], row['acc_soup'], row['acc_b']) == pytest.approx(
        (1 - e[0], 1 - e[1], 1 - e[2]))
    assert row['gain'] == pytest.approx((e[0] + e[2]) / 2 - e[1])
    _check_ssrs(row, theta_i, _params(runs['ft_a'], row['epoch']),
                _params(runs['ft_b'], row['epoch']))
  assert res['init'] == {'workdir': runs['ft_a'], 'epoch': 0}
  assert res['halves'] == {'a': 0, 'b': 1}
  assert res['figures'] == ['figure.png']  # config.figure_formats='png'.
  assert (tmp_path / 'ft' / 'soups' / 'figure.png').exists()
  # Provenance: A and B at every epoch, then θI, which is the pre-trained run.
  prov = [(p['workdir'], p['epoch']) for p in res['provenance']]
  assert prov == [(runs['ft_a'], 1), (runs['ft_a'], 2), (runs['ft_b'], 1),
                  (runs['ft_b'], 2), (runs['ft_a'], 0)]
  assert res['provenance'][-1]['fingerprint'] == checkpoint.provenance(
      runs['pre'])['fingerprint'] == checkpoint.provenance(
          runs['ft_b'], 0)['fingerprint']
  # Bad input stops before anything is built.
  with monkeypatch.context() as m:
    m.setattr(probe_runner, 'Prober', None)
    _bad_input_fails(runs, tmp_path / 'bad')
  ind = _probe(runs['rand_a'], runs['pre'])
  ind.soups.epochs = (2,)
  r_ind = _load(probe_runner.run(ind, str(tmp_path / 'ind'))['soups'])
  r_ft, r_ind = res['soups'][1], r_ind['soups'][0]
  assert r_ft['ssr_ab'] > 0.9 and r_ind['ssr_ab'] < 0.7
  assert r_ft['ssr_ab'] > r_ind['ssr_ab'] + 0.25
  assert r_ft['gain'] > r_ind['gain'] + 0.1


def _params(workdir, epoch):
  variables, _ = checkpoint.restore_model(workdir, epoch)
  return jax.tree.map(np.asarray, variables['params'])


def _check_ssrs(row, ti, ta, tb):
  """The row's SSRs against _np_ssr on the checkpoints' params."""
  upd = jax.tree.map(np.subtract, ta, ti), jax.tree.map(np.subtract, tb, ti)
  want = {'ssr_ia': _np_ssr(ti, ta), 'ssr_ib': _np_ssr(ti, tb),
          'ssr_ab': _np_ssr(ta, tb), 'ssr_updates_ab': _np_ssr(*upd)}
  assert {k: row[k] for k in want} == pytest.approx(want, abs=1e-6)


def _bad_input_fails(runs, out):
  cases = [(_probe(runs['ft_a'], ''), ValueError, 'checkpoint_b is empty'),
           (_probe(runs['ft_a'], runs['ft_b'], init=f"{runs['pre']}@3"),
            FileNotFoundError, 'Epoch 3'),
           (_probe(runs['ft_a'], str(out / 'none')), FileNotFoundError,
            'holds no checkpoint')]
  bad = _probe(runs['ft_a'], runs['ft_b'])
  bad.soups.epochs = (3,)
  cases.append((bad, FileNotFoundError, 'Epoch 3'))
  bad = _probe(runs['ft_a'], runs['ft_b'])
  bad.soups.num_points = 0
  cases.append((bad, ValueError, 'config.soups'))
  for config, error, match in cases:
    with pytest.raises(error, match=match):
      probe_runner.run(config, str(out))
