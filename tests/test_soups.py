"""Model soups (Fig. 11, probe/studies/soups.py): the SSRs, the gain, the
configs (a pre-training task disjoint from A and B's; CIFAR-10 as the
paper), the figure, the kind end to end and its finding."""

import doctest
import importlib.util
import json
import pathlib

import jax
import ml_collections
import numpy as np
import pytest
from conftest import half_train_config as _tiny

from valley_jax import checkpoint, data, defaults, models, plots, rundir
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
  for module in (soups, rundir, data):
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0


# --------------------------------------------------------------- the configs

_CONFIGS = pathlib.Path(__file__).resolve().parent.parent / 'configs'


def _config(name, arg=None):
  spec = importlib.util.spec_from_file_location(name, _CONFIGS / f'{name}.py')
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(arg)


def _rows(x):
  """The examples of x as a set of byte strings (one per image)."""
  return {r.tobytes() for r in np.ascontiguousarray(x).reshape(len(x), -1)}


def test_digits_pretraining_task_is_disjoint_from_both_halves():
  """θI of the pre-trained start learns other classes on other images: no
  label and no image of its data is in A's or B's training or test set."""
  cfg = {r: _config('soups_digits', r)
         for r in ('pretrain', 'a', 'b', 'ft_a', 'ft_b')}
  ds = {r: data.from_config(c.data) for r, c in cfg.items()}
  pre, a, b = ds['pretrain'], ds['a'], ds['b']
  own = set(np.unique(a.y_train)) | set(np.unique(b.y_train))
  assert own == set(np.unique(a.y_test)) == {5, 6, 7, 8, 9}
  assert set(np.unique(pre.y_train)) == set(np.unique(pre.y_test)) == {
      0, 1, 2, 3, 4}
  assert not _rows(pre.x_train) & (_rows(a.x_train) | _rows(b.x_train) |
                                   _rows(a.x_test))
  # A and B: the two halves of one task, disjoint, together all of it.
  whole = data.from_config(ml_collections.ConfigDict(
      {**cfg['a'].data.to_dict(), 'half': None}))
  assert not _rows(a.x_train) & _rows(b.x_train)
  assert len(a.y_train) + len(b.y_train) == len(whole.y_train)
  assert _rows(a.x_train) | _rows(b.x_train) == _rows(whole.x_train)
  # Fine-tuned runs start from θI with a fresh head, on the same halves.
  for r, h in (('ft_a', 0), ('ft_b', 1)):
    c = cfg[r]
    assert (c.data.half, c.data.classes) == (h, cfg['a'].data.classes)
    assert c.train.init_from and c.train.init_fresh == 'CLF'
    assert c.seed == cfg['a'].seed == cfg['b'].seed != cfg['pretrain'].seed
  assert not cfg['a'].train.init_from and cfg['pretrain'].data.half is None


def test_keep_classes_and_parse_classes():
  assert data.parse_classes('0-2, 7', 10) == (0, 1, 2, 7)
  for bad in ('', '3-12', 'x', '-1'):
    with pytest.raises(ValueError, match='config.data.classes'):
      data.parse_classes(bad, 10)
  ds = data.Dataset('t', np.arange(6.)[:, None], np.array([0, 1, 2, 0, 1, 2]),
                    np.arange(3.)[:, None], np.array([2, 1, 0]), 3)
  kept = data.keep_classes(ds, (0, 2))
  assert kept.x_train[:, 0].tolist() == [0, 2, 3, 5]
  assert kept.y_test.tolist() == [2, 0] and kept.num_classes == 3


def test_cifar10_config_is_the_papers_setting():
  """Paper Sect. 6.1: VGG16-BN from one random init on the two halves of
  CIFAR-10, 50 epochs, epochs {1, 2, 3, 5, 10, 20, 30, 50}, Appendix A's
  recipe; and the pre-trained comparison starts from CIFAR-100 with a
  fresh head. Models built with eval_shape only."""
  a, b = _config('soups_cifar10', 'a'), _config('soups_cifar10', 'b')
  for c, h in ((a, 0), (b, 1)):
    train_runner.validate(c)
    assert (c.model.name, c.model.bn, c.data.name, c.data.half) == (
        'vgg16', True, 'cifar10', h)
    assert (c.train.epochs, tuple(c.train.keep_epochs)) == (
        50, (1, 2, 3, 5, 10, 20, 30, 50))
    assert (c.optim.name, c.optim.lr, c.optim.momentum,
            c.optim.weight_decay, c.train.batch_size, c.data.augment) == (
                'sgd', 0.03, 0.9, 5e-4, 256, True)
    assert c.seed == 0 and c.train.init_from == ''  # One shared random θI.
  pre, ft = _config('soups_cifar10', 'pretrain'), _config('soups_cifar10',
                                                          'ft_b')
  assert pre.data.name == 'cifar100'
  assert pre.model.to_dict() == a.model.to_dict()
  assert ft.train.init_from == 'runs/cifar10_soups/pre'
  assert ft.train.init_fresh == 'CLF' and ft.data.half == 1
  shapes = {}
  for name, c, k in (('a', a, 10), ('pre', pre, 100)):
    model = models.from_config(c.model, k, (32, 32, 3))
    v = models.abstract_variables(model, (32, 32, 3))
    shapes[name] = v
    assert sum(x.size for x in jax.tree.leaves(v['params'])) > 14_000_000
  # θI fits A's architecture but for the fresh head (init_fresh='CLF').
  head = frozenset(f'params/head/{k}' for k in shapes['a']['params']['head'])
  rundir.check_same_architecture(shapes['a'], shapes['pre'], 'pre', head)
  with pytest.raises(ValueError, match='params/head'):
    rundir.check_same_architecture(shapes['a'], shapes['pre'], 'pre')
  both = _config('probe_soups', 'cifar10_both')
  assert (both.soups.checkpoint_a, both.soups.compare) == (
      'runs/cifar10_soups/rand_a',
      'runs/cifar10_soups/ft_a,runs/cifar10_soups/ft_b')


# ---------------------------------------------------------------- the figure


def _start(label, gains, ssr_ab, n_test=180):
  epochs = [1, 2, 5]
  return {'label': label, 'n_test': n_test,
          'init': {'workdir': 'runs/x', 'epoch': 0},
          'curves': [{'epoch': e, 'lambdas': [0.0, 0.5, 1.0],
                      'error': [0.1, 0.1 - g, 0.1]}
                     for e, g in zip(epochs, gains)],
          'soups': [{'epoch': e, 'gain': g, 'ssr_ia': 0.9, 'ssr_ib': 0.9,
                     'ssr_ab': s} for e, g, s in zip(epochs, gains, ssr_ab)]}


def test_figure_one_axis_per_quantity_shared_and_resolved(monkeypatch):
  """No twin axes; both starts on one SSR axis on [0.5, 1] and one gain axis,
  symmetric, at least ±3 test images, with the ±1-image band labelled."""
  got = []
  monkeypatch.setattr(plots, 'save', lambda fig, *_: got.append(fig) or [])
  main = _start('pre-trained', [0.0, 1 / 180, -1 / 180], [0.99, 0.95, 0.94])
  other = _start('random', [0.0, -2 / 180, 0.0], [0.98, 0.8, 0.7])
  soups.soups_figure({'model': 'cnn', 'dataset': 'digits', **main,
                      'compare': other}, 'unused')
  fig, = got
  boxes = [tuple(np.round(ax.get_position().bounds, 6)) for ax in fig.axes]
  assert len(set(boxes)) == len(fig.axes) == 4  # 2 accuracy, SSR, gain.
  acc_a, acc_b, ssr, gain = fig.axes
  assert acc_a.get_ylim() == acc_b.get_ylim()
  assert ssr.get_ylim() == (0.5, 1.0)
  drawn = [ln for ln in ssr.get_lines() if len(ln.get_xdata())]
  assert len(drawn) == 6  # SSR-IA/IB/AB of each start.
  lo, hi = gain.get_ylim()
  assert lo == -hi and hi >= 3 / 180
  assert {ln.get_linestyle() for ln in gain.get_lines()} >= {'-', '--'}
  band, = [p for p in gain.patches if '1 test image' in p.get_label()]
  ys = band.get_patch_transform().transform(band.get_path().vertices)[:, 1]
  assert min(ys) == pytest.approx(-1 / 180)
  assert max(ys) == pytest.approx(1 / 180)
  assert '1/180' in band.get_label()
  # The limits do not follow the data: a probe with smaller gains draws the
  # same axes, so two figures read alike.
  got.clear()
  soups.soups_figure({'model': 'cnn', 'dataset': 'digits',
                      **_start('x', [0.0] * 3, [0.9] * 3)}, 'unused')
  assert got[0].axes[-1].get_ylim() == (lo, hi)
  assert got[0].axes[-2].get_ylim() == (0.5, 1.0)


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
  assert res['n_test'] == 360 and 'compare' not in res
  for row in res['soups']:  # ½(CE θA + CE θB) − CE(½θA + ½θB).
    cv = res['curves'][row['epoch'] - 1]
    assert row['loss_gain'] == pytest.approx(
        (cv['loss'][0] + cv['loss'][2]) / 2 - cv['loss'][1])
  # Independent inits, with the fine-tuned pair as config.soups.compare:
  # the compare pair is measured exactly as when it is the main pair.
  ind = _probe(runs['rand_a'], runs['pre'])
  ind.soups.epochs = (2,)
  ind.soups.update(compare=f"{runs['ft_a']},{runs['ft_b']}",
                   compare_label='fine-tuned')
  r_ind = _load(probe_runner.run(ind, str(tmp_path / 'ind'))['soups'])
  cmp = r_ind['compare']
  assert cmp['label'] == 'fine-tuned' and cmp['n_test'] == 360
  assert cmp['init'] == res['init'] and cmp['halves'] == res['halves']
  row_c, row_m = dict(cmp['soups'][0]), dict(res['soups'][1])
  assert row_c.pop('gain_ci') == pytest.approx(row_m.pop('gain_ci'))
  assert row_c == pytest.approx(row_m)
  assert [(p['workdir'], p['epoch']) for p in r_ind['provenance']][3:] == [
      (runs['ft_a'], 2), (runs['ft_b'], 2), (runs['ft_a'], 0)]
  # Intervals (issue 25): each gain's over the test examples; findings per
  # start and their difference, paired example by example.
  for row in res['soups']:
    assert row['gain_ci'][0] <= row['gain'] <= row['gain_ci'][1]
    assert row['gain_n_examples'] == 360
  claims = [f['claim'] for f in r_ind['findings']]
  assert len(claims) == 3 and claims[2].startswith('soup gains differ')
  assert r_ind['findings'][2]['mean'] == pytest.approx(
      r_ind['soups'][0]['gain'] - cmp['soups'][0]['gain'])
  assert not any(k.startswith('_') for k in cmp['curves'][0])
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
  bad = _probe(runs['ft_a'], runs['ft_b'])
  bad.soups.compare = runs['ft_a']  # One run: no pair.
  cases.append((bad, ValueError, 'config.soups.compare'))
  bad = _probe(runs['ft_a'], runs['ft_b'])
  bad.soups.compare = f"{runs['ft_a']},{out / 'none'}"
  cases.append((bad, FileNotFoundError, 'holds no checkpoint'))
  for config, error, match in cases:
    with pytest.raises(error, match=match):
      probe_runner.run(config, str(out))
