"""core/subspace.py and probe/studies/simplex.py: simplexes of runs, their
trained connectors and ensembles; values by hand or by plain numpy."""

import doctest
import importlib.util
import math
import os

import jax
import ml_collections
import numpy as np
import optax
import pytest
from conftest import (load_json, plain_loss_error, small_probe_config,
                      tiny_train_config)

from valley_jax import checkpoint, data, models, sharding
from valley_jax.core import steps, subspace, sweep
from valley_jax.errors import InputError
from valley_jax.probe import runner as probe_runner
from valley_jax.probe.studies import simplex as study
from valley_jax.train import runner as train_runner


_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# ---------------------------------------------------------------- helpers


@pytest.fixture(scope='module')
def digits():
  """256 training and 120 test digits."""
  return data.subset(data.load_digits(), 256, 120, seed=0)


def _mlp():
  return models.build_model('mlp', 10, hidden=(16,), bn=False)


def _solutions(ds, n=3):
  """n MLPs without BN from seeds 0..n−1 (a few SGD steps each, so their
  errors differ from chance and from one another)."""
  model = _mlp()
  out = []
  for seed in range(n):
    p = steps.init_variables(model, jax.random.key(seed),
                             ds.input_shape)['params']
    grad = jax.jit(jax.grad(lambda p: steps.cross_entropy(
        model.apply({'params': p}, ds.x_train), ds.y_train).mean()))
    for _ in range(3 + 2 * seed):
      p = jax.tree.map(lambda a, g: a - 0.5 * g, p, grad(p))
    out.append(p)
  return model, out


def _setting(model, ds):
  return sweep.Setting(sweep.make_sweep(model),
                       sweep.make_batches(ds.x_test, ds.y_test, 60), None)


def _settings(**more):
  base = dict(kind=study.CONNECTORS_KIND, solutions=[], connectors=1,
              epochs=2, batch_size=64, samples=1,
              optim=dict(name='sgd', lr=0.05, momentum=0.9,
                         weight_decay=0.0),
              log_volume_weight=0.0, init_noise=0.5, seed=0)
  return checkpoint.as_json({**base, **more})


def _leaves(tree):
  return [np.array(x) for x in jax.tree.leaves(tree)]


# ------------------------------------------------------------ core math


@pytest.mark.parametrize('module', [subspace, study])
def test_docstring_examples(module):
  result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
  assert result.attempted > 0 and result.failed == 0


@pytest.mark.parametrize('n,r', [(3, 1), (3, 5), (4, 3), (2, 6), (3, 10)])
def test_barycentric_grid_sums_to_one_and_holds_the_vertices(n, r):
  g = subspace.barycentric_grid(n, r)
  assert len(g) == math.comb(r + n - 1, n - 1)  # (r+1)(r+2)/2 for n = 3.
  np.testing.assert_allclose(g.sum(1), 1.0, atol=1e-12)
  assert (g >= 0).all() and len(np.unique(g, axis=0)) == len(g)
  assert np.allclose(np.round(g * r), g * r)  # Steps of 1/r.
  for vertex in np.eye(n):
    assert (g == vertex).all(1).any()


def test_complex_of_three_runs_by_hand():
  assert subspace.complex_simplices(3, 1).tolist() == [[0, 1, 3], [0, 2, 3],
                                                       [1, 2, 3]]
  assert subspace.complex_simplices(4, 2).tolist()[-1] == [2, 3, 4, 5]
  # Two connectors: (a, b, cj) and (a, cj, ck) for every pair; 3 pairs.
  tris = subspace.complex_triangles(3, 2).tolist()
  assert [0, 3, 4] in tris and [0, 1, 2] not in tris and len(tris) == 9
  g = study.make_grid(3, 1, 3)
  # Every raw and trained grid point is where its face puts it.
  for faces, idx in ((g.raw_faces, g.raw_idx), (g.trained_faces,
                                                  g.trained_idx)):
    want = subspace.on_faces(4, faces, g.tri)
    np.testing.assert_allclose(g.points[idx], want, atol=1e-9)
  np.testing.assert_allclose(g.points[g.raw_centre], [1 / 3] * 3 + [0])
  np.testing.assert_allclose(g.points[g.trained_centre], [0, 0, 0, 1])
  # 10 raw points (the centre is one at r = 3); the trained triangles add
  # c, 3 × 2 points on the edges (a, c) and one interior point each.
  assert len(g.points) == 10 + 1 + 6 + 3


def test_log_volume_by_hand():
  tri = np.array([[0., 0, 0], [1, 0, 0], [0, 1, 0]])
  assert float(subspace.log_volume(tri)) == pytest.approx(math.log(0.5))
  tet = np.concatenate([tri, [[0, 0, 1]]])
  assert float(subspace.log_volume(tet)) == pytest.approx(math.log(1 / 6))
  # Scaling a triangle by 3 multiplies its area by 9; pytrees alike.
  trees = [{'a': 3 * v[:2], 'b': 3 * v[2:]} for v in tri]
  assert float(subspace.tree_log_volume(trees)) == pytest.approx(
      math.log(0.5 * 9), rel=1e-6)


def test_samples_lie_in_one_simplex_and_are_uniform():
  simplices = subspace.complex_simplices(3, 1)
  keys = jax.random.split(jax.random.key(0), 3000)
  w = np.asarray(jax.vmap(
      lambda k: subspace.sample_weights(k, simplices, 4))(keys), np.float64)
  np.testing.assert_allclose(w.sum(1), 1.0, atol=1e-5)
  assert (w >= 0).all()
  support = [tuple(np.flatnonzero(row > 0)) for row in w]
  assert set(support) <= {tuple(s) for s in simplices.tolist()}
  # Each simplex a third of the time; Dirichlet(1) has mean 1/3 per vertex.
  for s in simplices.tolist():
    assert support.count(tuple(s)) / len(w) == pytest.approx(1 / 3, abs=0.03)
  assert w[:, 3].mean() == pytest.approx(1 / 3, abs=0.02)


# ------------------------------------------------------ the sweep's values


def test_one_vertex_simplex_is_plain_evaluation(digits):
  model, (p,) = _solutions(digits, 1)
  out = study.evaluate_points(_setting(model, digits), [p], {},
                              np.ones((1, 1)))
  loss, err = plain_loss_error(model, p, digits.x_test, digits.y_test)
  assert out['error'][0] == pytest.approx(err, abs=1e-7)
  assert out['loss'][0] == pytest.approx(loss, rel=1e-5)


def test_vertices_and_centre_equal_plain_evaluation(digits):
  model, sols = _solutions(digits)
  centroid = jax.tree.map(lambda *a: sum(a) / 3, *sols)
  g = study.make_grid(3, 1, 2)
  out = study.evaluate_points(_setting(model, digits), sols + [centroid], {},
                              g.points)
  plain = [plain_loss_error(model, p, digits.x_test, digits.y_test)
           for p in sols]
  assert len({e for _, e in plain}) == 3  # The runs differ.
  for i, (loss, err) in enumerate(plain):
    assert out['error'][g.vertex(i)] == pytest.approx(err, abs=1e-7)
    assert out['loss'][g.vertex(i)] == pytest.approx(loss, rel=1e-5)
  # The raw centre and the connector (here the centroid) are one point.
  loss, err = plain_loss_error(model, centroid, digits.x_test, digits.y_test)
  for row in (g.raw_centre, g.trained_centre):
    assert out['error'][row] == pytest.approx(err, abs=1e-7)
  s = study.summarize(g, out['loss'], out['error'])
  assert s['vertices']['error'] == pytest.approx([e for _, e in plain],
                                                 abs=1e-7)
  assert s['raw']['centre_error'] == pytest.approx(err, abs=1e-7)
  # The barrier: the max over the three raw edges minus the vertices' mean.
  edges = [g.index(w) for w in ([.5, .5, 0, 0], [.5, 0, .5, 0],
                                [0, .5, .5, 0])] + [g.vertex(i)
                                                    for i in range(3)]
  assert s['raw']['barrier'] == pytest.approx(
      out['error'][edges].max() - np.mean([e for _, e in plain]))


# ------------------------------------------------------------- training


def test_training_moves_the_connector_and_keeps_the_solutions(digits,
                                                               tmp_path):
  model, sols = _solutions(digits)
  before = [_leaves(p) for p in sols]
  mesh = sharding.make_mesh(0)
  conns, history = study.train_connectors(
      model, digits, sols, {}, str(tmp_path), _settings(epochs=1), mesh)
  for p, b in zip(sols, before):
    assert all(np.array_equal(x, y) for x, y in zip(_leaves(p), b))
  centroid = jax.tree.map(lambda *a: sum(a) / 3, *sols)
  assert not all(np.allclose(x[0], y) for x, y in
                 zip(_leaves(conns), _leaves(centroid)))
  assert [r['epoch'] for r in history] == [1]
  assert np.isfinite(history[0]['train_loss'])


def test_killed_training_ends_with_the_same_connectors(digits, tmp_path):
  model, sols = _solutions(digits)
  mesh = sharding.make_mesh(0)
  settings = _settings(epochs=2, samples=2)
  whole, _ = study.train_connectors(model, digits, sols, {},
                                    str(tmp_path / 'a'), settings, mesh)
  study.train_connectors(model, digits, sols, {}, str(tmp_path / 'b'),
                         settings, mesh, stop_after=1)
  resumed, history = study.train_connectors(model, digits, sols, {},
                                            str(tmp_path / 'b'), settings,
                                            mesh)
  assert [r['epoch'] for r in history] == [1, 2]
  assert all(np.array_equal(x, y)
             for x, y in zip(_leaves(whole), _leaves(resumed)))
  # Other settings in the same folder are refused, not reused.
  with pytest.raises(InputError, match='connectors_dir'):
    study.train_connectors(model, digits, sols, {}, str(tmp_path / 'b'),
                           _settings(epochs=2, samples=1), mesh)


def test_log_volume_term_pushes_the_connector_out(digits):
  """One step with a large λ from a connector moved towards run 0 (at the
  centroid the mean log-area is stationary): the step reports the
  simplices' mean log-volume before it (as computed here with numpy
  vectors), and the triangles grow."""
  model, sols = _solutions(digits)
  stacked = subspace.stack(sols)
  tx = optax.sgd(0.05)
  simplices = subspace.complex_simplices(3, 1)
  conns = subspace.init_connectors(stacked, 1, jax.random.key(0), 0.0)
  conns = jax.tree.map(lambda c, s: 0.6 * c + 0.4 * s[:1], conns, stacked)

  def logvol(c):
    v = [np.concatenate([np.ravel(x) for x in jax.tree.leaves(p)])
         for p in [*sols, subspace.unstack(c)[0]]]
    return np.mean([float(subspace.log_volume(np.stack([v[i] for i in s])))
                    for s in simplices.tolist()])

  step = jax.jit(subspace.make_connector_step(model, tx, simplices,
                                              log_volume_weight=100.0))
  state = steps.init_state({'params': conns, 'batch_stats': {}}, tx)
  state, m = step(state, stacked, {}, digits.x_train[:64],
                  digits.y_train[:64], jax.random.key(1))
  assert float(m['log_volume']) == pytest.approx(logvol(conns), rel=1e-4)
  assert logvol(state.params) > logvol(conns) + 0.01


# ------------------------------------------------------------ ensembles


def test_ensemble_of_identical_members_equals_the_member(digits):
  model, sols = _solutions(digits, 1)
  setting = _setting(model, digits)
  predict = study.make_predict(model, digits.mean, digits.std)
  row = study.ensemble_row('same', ['a', 'b', 'c'], [(sols[0], {})] * 3,
                           predict, setting)
  one = study.ensemble_row('one', ['a'], [(sols[0], {})], predict, setting)
  loss, err = plain_loss_error(model, sols[0], digits.x_test, digits.y_test)
  assert row['accuracy'] == one['accuracy'] == row['member_accuracy']
  assert row['accuracy'] == pytest.approx(1 - err, abs=1e-9)
  assert row['nll'] == pytest.approx(row['member_nll'], rel=1e-9)
  assert row['nll'] == pytest.approx(loss, rel=1e-5)
  assert row['disagreement'] == 0.0
  assert row['cosine'] == pytest.approx(1.0)


def test_ensemble_metrics_by_hand():
  p = np.zeros((2, 3, 2))
  p[0] = [[0.9, 0.1], [0.4, 0.6], [0.3, 0.7]]
  p[1] = [[0.6, 0.4], [0.8, 0.2], [0.1, 0.9]]
  m = subspace.ensemble_metrics(p, np.array([0, 0, 1]))
  # Mean probabilities [.75, .25], [.6, .4], [.2, .8]: all right.
  assert m['accuracy'] == 1.0 and m['member_accuracy'] == pytest.approx(5 / 6)
  assert m['nll'] == pytest.approx(-np.mean(np.log([.75, .6, .8])))
  assert m['disagreement'] == pytest.approx(1 / 3)
  cos = subspace.pairwise_cosines(np.array([[1., 0, 0], [0, 2, 0],
                                            [1, 1, 0]]))
  assert subspace.mean_off_diagonal(cos) == pytest.approx(
      (0 + 2 * 2 ** -0.5) / 3)


# ------------------------------------------------------------- bad input


def _config(runs, kind='simplex'):
  c = small_probe_config('runs/none', kind)
  c.simplex.checkpoints = tuple(runs)
  c.simplex.connectors_dir = 'runs/none_connectors'
  return c


def _fake_run(workdir, width=0.125):
  """Epoch 0 of a tiny MLP run, written without training."""
  cfg = tiny_train_config()
  cfg.model.width = width
  ds = data.load_digits()
  model = models.from_config(cfg.model, ds.num_classes, ds.input_shape)
  v = steps.init_variables(model, jax.random.key(0), ds.input_shape)
  mngr = checkpoint.manager(str(workdir))
  checkpoint.save(mngr, 0, steps.init_state(v, optax.sgd(0.1)),
                  cfg.to_dict())
  mngr.wait_until_finished()
  return str(workdir)


def test_fewer_than_three_runs_is_refused():
  with pytest.raises(InputError, match=r'config\.simplex\.checkpoints names '
                                       r'2 run'):
    probe_runner.validate(_config(['runs/a', 'runs/b']))
  with pytest.raises(InputError, match='twice'):
    probe_runner.validate(_config(['runs/a', 'runs/b', 'runs/a']))


@pytest.mark.parametrize('field,value', [('resolution', 0),
                                         ('resolution', -2),
                                         ('connectors', 0),
                                         ('batch_size', 0)])
def test_non_positive_sizes_are_refused(field, value):
  c = _config(['runs/a', 'runs/b', 'runs/c'])
  c.simplex[field] = value
  with pytest.raises(InputError, match=rf'config\.simplex\.{field}='):
    probe_runner.check_names(c)


def test_runs_of_different_architectures_are_refused(tmp_path, monkeypatch):
  monkeypatch.setattr(sweep, 'make_sweep', None)  # Nothing is compiled.
  runs = [_fake_run(tmp_path / 'a'), _fake_run(tmp_path / 'b'),
          _fake_run(tmp_path / 'c', width=0.25)]
  with pytest.raises(InputError, match=r'config\.simplex\.checkpoints\[2\]'):
    probe_runner.validate(_config(runs))
  c = _config(runs[:2] + [_fake_run(tmp_path / 'd')], 'ensembles')
  with pytest.raises(InputError, match='trajectory'):  # Epoch 0 only.
    probe_runner.validate(c)


def test_digits_config_trains_three_seeds():
  spec = importlib.util.spec_from_file_location(
      'probe_simplex', os.path.join(_REPO, 'configs', 'probe_simplex.py'))
  mod = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(mod)
  config = mod.get_config()
  runs = probe_runner.train_runs(config)
  assert [r.config.seed for r in runs] == [0, 1, 2]
  assert [r.workdir for r in runs] == list(config.simplex.checkpoints)
  probe_runner.check_names(mod.get_config('cifar10'))


# ------------------------------------------------------------ end to end


@pytest.mark.slow
def test_simplex_and_ensembles_end_to_end(tmp_path):
  runs = []
  for seed in range(3):
    cfg = tiny_train_config(epochs=2, bn=False)
    cfg.seed, cfg.train.keep_epochs = seed, (1,)
    runs.append(str(tmp_path / f'run{seed}'))
    train_runner.run(cfg, runs[-1])
  c = _config(runs, 'simplex,ensembles')
  c.simplex.update(resolution=3, epochs=1,
                   connectors_dir=str(tmp_path / 'conns'))
  c.ensembles.members = 2
  paths = probe_runner.run(c, str(tmp_path / 'probe'))
  s = load_json(paths['simplex'])['simplex']
  ds = data.from_config(tiny_train_config().data)
  for w, err in zip(runs, s['vertices']['error']):
    v, cfg = checkpoint.restore_model(w)
    model = models.from_config(ml_collections.ConfigDict(cfg['model']),
                               ds.num_classes, ds.input_shape)
    assert err == pytest.approx(plain_loss_error(
        model, v['params'], ds.x_test, ds.y_test)[1], abs=1e-7)
  assert len(s['raw']['error'][0]) == 10 and len(s['trained']['faces']) == 3
  assert s['connectors']['epochs'] == 1
  e = load_json(paths['ensembles'])['ensembles']
  assert [r['set'] for r in e['sets']] == ['independent', 'trajectory',
                                           'simplex']
  assert all(len(r['members']) == 2 for r in e['sets'])
  assert (tmp_path / 'probe' / 'simplex' / 'figure.png').exists()
  assert (tmp_path / 'probe' / 'ensembles' / 'figure.png').exists()
  # Run again: nothing is recomputed.
  again = probe_runner.run(c, str(tmp_path / 'probe'))
  assert load_json(again['simplex'])['simplex'] == s
