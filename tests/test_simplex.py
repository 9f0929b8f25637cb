"""core/subspace.py and probe/studies/simplex.py: simplexes of runs, their
trained connectors and ensembles; values by hand or by plain numpy."""

import doctest
import importlib.util
import math
import os
import signal
import subprocess
import sys
import time

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
from valley_jax.core import diversity
from valley_jax.probe.studies import connectors, ensembles
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
  base = dict(kind=connectors.CONNECTORS_KIND, solutions=[], vertices=2,
              epochs=1, batch_size=64, samples=1,
              optim=dict(name='sgd', lr=0.05, momentum=0.9,
                         weight_decay=0.0),
              volume=0.1, volume_from=2, seed=0)
  return checkpoint.as_json({**base, **more})


def _leaves(tree):
  return [np.array(x) for x in jax.tree.leaves(tree)]


# ------------------------------------------------------------ core math


@pytest.mark.parametrize('module', [subspace, study, diversity, ensembles])
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


def test_bentons_complex_by_hand():
  # Simplex i is {run i, c1, c2}: no simplex holds two runs.
  sim = subspace.complex_simplices(3, 2)
  assert sim.tolist() == [[0, 3, 4], [1, 3, 4], [2, 3, 4]]
  assert not subspace.holds_two_solutions(sim, 3)
  assert subspace.holds_two_solutions([[0, 1, 3]], 3)
  for n, m in ((3, 2), (4, 3), (5, 2)):
    sim = subspace.complex_simplices(n, m).tolist()
    assert len(sim) == n and not subspace.holds_two_solutions(sim, n)
    # Every two simplices share exactly the connectors.
    assert all(set(a) & set(b) == set(range(n, n + m))
               for a in sim for b in sim if a != b)
  # Three connectors: 3 triangles with run i per simplex, (c1, c2, c3) once.
  tris = subspace.complex_triangles(4, 3).tolist()
  assert len(tris) == 4 * 3 + 1 and [4, 5, 6] in tris
  assert not any(sum(v < 4 for v in t) > 1 for t in tris)
  g = study.make_grid(3, 2, 3)
  for faces, idx in ((g.raw_faces, g.raw_idx), (g.trained_faces,
                                                  g.trained_idx)):
    want = subspace.on_faces(5, faces, g.tri)
    np.testing.assert_allclose(g.points[idx], want, atol=1e-9)
  np.testing.assert_allclose(g.points[g.raw_centre], [1 / 3] * 3 + [0, 0])
  np.testing.assert_allclose(g.points[g.trained_centre], [0, 0, 0, .5, .5])
  # 10 raw points (the raw centre is one at r = 3); the complex: c1, c2 and
  # 2 points inside c1–c2, per run 2 + 2 on its edges to c1 and c2 and 1
  # inside; the trained centre (not a grid point at r = 3).
  assert len(g.points) == 10 + 4 + 3 * 5 + 1


def test_paths_through_the_complex_by_hand():
  names = [n for n, _ in study.routes(4, 2)]
  assert names == ['c1', 'c2', 'c̄']
  w = study.path_weights(6, 0, 2, study.routes(4, 2)[2][1], 2)
  np.testing.assert_allclose(w.sum(1), 1.0)
  np.testing.assert_allclose(w[0], [1, 0, 0, 0, 0, 0])
  np.testing.assert_allclose(w[2], [0, 0, 0, 0, .5, .5])  # c̄ in the middle.
  np.testing.assert_allclose(w[1], [.5, 0, 0, 0, .25, .25])
  np.testing.assert_allclose(w[-1], [0, 0, 1, 0, 0, 0])
  # Every point of the path lies in simplex 0 or simplex 2 of the complex.
  for row in w:
    support = set(np.flatnonzero(row > 1e-12).tolist())
    assert support <= {0, 4, 5} or support <= {2, 4, 5}
  # Barrier: max of the mean error along the path minus its ends' mean.
  e = np.zeros((10, 5))
  e[:3, 2] = 1.0  # 0.3 in the middle.
  e[:1, 0] = 1.0  # 0.1 at the start.
  assert study.path_barrier(e)['mean'] == pytest.approx(0.3 - 0.05)
  # The margin statistic: connector error 0.3 (column 2) + 0.1 − 0.25.
  stat = study.margins_stat([(list(range(5)), 2)], 0.1)
  assert stat(e[None])[0] == pytest.approx(0.15)


def test_log_volume_by_hand():
  tri = np.array([[0., 0, 0], [1, 0, 0], [0, 1, 0]])
  assert float(subspace.log_volume(tri)) == pytest.approx(math.log(0.5))
  tet = np.concatenate([tri, [[0, 0, 1]]])
  assert float(subspace.log_volume(tet)) == pytest.approx(math.log(1 / 6))
  # Scaling a triangle by 3 multiplies its area by 9; pytrees alike.
  trees = [{'a': 3 * v[:2], 'b': 3 * v[2:]} for v in tri]
  assert float(subspace.tree_log_volume(trees)) == pytest.approx(
      math.log(0.5 * 9), rel=1e-6)
  # Benton et al.'s term: log(V² + 1e-4), here V = 4.5.
  assert float(subspace.log_sq_volume(trees)) == pytest.approx(
      math.log(4.5 ** 2 + 1e-4), rel=1e-6)
  flat = [np.zeros(3)] * 3
  assert float(subspace.log_sq_volume(flat)) == pytest.approx(
      math.log(1e-4), rel=1e-4)


def test_samples_lie_in_one_simplex_and_are_uniform():
  simplices = subspace.complex_simplices(3, 2)
  keys = jax.random.split(jax.random.key(0), 3000)
  w = np.asarray(jax.vmap(
      lambda k: subspace.sample_weights(k, simplices, 5))(keys), np.float64)
  np.testing.assert_allclose(w.sum(1), 1.0, atol=1e-5)
  assert (w >= 0).all()
  support = [tuple(np.flatnonzero(row > 0)) for row in w]
  assert set(support) <= {tuple(s) for s in simplices.tolist()}
  # Each simplex a third of the time; Dirichlet(1) has mean 1/3 per vertex.
  for s in simplices.tolist():
    assert support.count(tuple(s)) / len(w) == pytest.approx(1 / 3, abs=0.03)
  assert w[:, 3].mean() == pytest.approx(1 / 3, abs=0.02)
  assert w[:, 0].mean() == pytest.approx(1 / 9, abs=0.02)


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
  g = study.make_grid(3, 2, 2)
  out = study.evaluate_points(_setting(model, digits),
                              sols + [centroid, centroid], {}, g.points)
  plain = [plain_loss_error(model, p, digits.x_test, digits.y_test)
           for p in sols]
  assert len({e for _, e in plain}) == 3  # The runs differ.
  for i, (loss, err) in enumerate(plain):
    assert out['error'][g.vertex(i)] == pytest.approx(err, abs=1e-7)
    assert out['loss'][g.vertex(i)] == pytest.approx(loss, rel=1e-5)
  # The raw centre and the connectors' centre (both the centroid here).
  loss, err = plain_loss_error(model, centroid, digits.x_test, digits.y_test)
  for row in (g.raw_centre, g.trained_centre):
    assert out['error'][row] == pytest.approx(err, abs=1e-7)
  s = study.summarize(g, out['loss'], out['error'])
  assert s['vertices']['error'] == pytest.approx([e for _, e in plain],
                                                 abs=1e-7)
  assert s['raw']['centre_error'] == pytest.approx(err, abs=1e-7)
  # The raw barrier: the max over the three raw edges minus the vertices'
  # mean.
  edges = [g.index(w) for w in ([.5, .5, 0, 0, 0], [.5, 0, .5, 0, 0],
                                [0, .5, .5, 0, 0])] + [g.vertex(i)
                                                       for i in range(3)]
  assert s['raw']['barrier_error'] == pytest.approx(
      out['error'][edges].max() - np.mean([e for _, e in plain]))


# ------------------------------------------------------------- training


_KILL_SCRIPT = """
import sys, time
import numpy as np
sys.path.insert(0, {tests!r})
import conftest  # the test environment: 8 CPU devices, the jit cache
from valley_jax import checkpoint, data, sharding
from valley_jax.probe.studies import connectors
import test_simplex as t
ds = data.subset(data.load_digits(), 256, 120, seed=0)
model, sols = t._solutions(ds)
save = checkpoint.save
def slow_save(*a, **k):  # Slow storage: the kill lands mid-training.
  out = save(*a, **k)
  time.sleep(1.0)
  return out
checkpoint.save = slow_save
connectors.train_vertices(model, ds, sols, {{}}, {folder!r},
                          t._settings(epochs=2, samples=2),
                          sharding.make_mesh(0))
"""


@pytest.mark.slow
def test_kill_9_mid_connector_resumes_bit_identically(digits, tmp_path):
  """Connectors train one after another, the solutions fixed; a training
  killed with SIGKILL while it trains connector 2 resumes from that
  connector's last saved epoch and ends with the same bits as one that was
  never stopped."""
  model, sols = _solutions(digits)
  before = [_leaves(p) for p in sols]
  mesh = sharding.make_mesh(0)
  settings = _settings(epochs=2, samples=2)
  whole, history = connectors.train_vertices(
      model, digits, sols, {}, str(tmp_path / 'a'), settings, mesh)
  for p, b in zip(sols, before):
    assert all(np.array_equal(x, y) for x, y in zip(_leaves(p), b))
  # Connector 1 left the solutions' centroid; connector 2 started at the
  # centroid of the three solutions and connector 1, and left it.
  centroid = jax.tree.map(lambda *a: sum(a) / 3, *sols)
  start2 = jax.tree.map(lambda *a: sum(a) / 4, *sols, whole[0])
  for conn, start in ((whole[0], centroid), (whole[1], start2)):
    assert not all(np.allclose(x, y) for x, y in
                   zip(_leaves(conn), _leaves(start)))
  # No volume term on connector 1, the authors' normalised λ on connector 2.
  assert [r['lambda'] for r in history[:2]] == [0.0] * 2
  init = connectors.init_log_sq_volume(
      model, digits.input_shape, 3,
      jax.random.fold_in(jax.random.key(0), 1002))
  assert history[2]['lambda'] == pytest.approx(max(0.1 / init, 1e-8))
  assert all(np.isfinite(r['train_loss']) for r in history)
  folder = str(tmp_path / 'b')
  script = _KILL_SCRIPT.format(tests=os.path.dirname(__file__),
                               folder=folder)
  proc = subprocess.Popen([sys.executable, '-c', script], cwd=_REPO,
                          env={**os.environ, 'PYTHONPATH': _REPO})
  deadline = time.time() + 120
  while time.time() < deadline and proc.poll() is None:
    if checkpoint.epochs(f'{folder}/vertex2'):
      break
    time.sleep(0.05)
  assert proc.poll() is None, 'the training ended before it was killed'
  os.kill(proc.pid, signal.SIGKILL)
  proc.wait()
  done = checkpoint.epochs(f'{folder}/vertex2')
  assert done and max(done) < 2  # Killed in the middle of connector 2.
  resumed, history = connectors.train_vertices(model, digits, sols, {},
                                               folder, settings, mesh)
  assert [(r['vertex'], r['epoch']) for r in history] == [
      (v, e) for v in (1, 2) for e in (1, 2)]
  assert all(np.array_equal(x, y)
             for x, y in zip(_leaves(whole), _leaves(resumed)))
  # Other settings in the same folder are refused, not reused.
  with pytest.raises(InputError, match='connectors_dir'):
    connectors.train_vertices(model, digits, sols, {}, folder,
                              _settings(epochs=2, samples=1), mesh)


def test_volume_term_pushes_the_new_vertex_out(digits):
  """One step with a large λ from a connector 2 moved towards run 0: the
  step reports log(V² + 1e-4) of the first simplex {run 0, c1, c2} before
  it (as computed here with numpy vectors), and the simplex grows."""
  model, sols = _solutions(digits)
  centroid = jax.tree.map(lambda *a: sum(a) / 3, *sols)
  c1 = jax.tree.map(lambda c, s: 0.5 * c + 0.5 * s, centroid, sols[1])
  fixed = subspace.stack(sols + [c1])
  tx = optax.sgd(0.05)
  simplices = subspace.complex_simplices(3, 2)
  c2 = jax.tree.map(lambda c, s: 0.8 * c + 0.2 * s, centroid, sols[0])

  def logsq(c):
    v = [np.concatenate([np.ravel(x) for x in jax.tree.leaves(p)])
         for p in (sols[0], c1, c)]
    e = np.stack([v[1] - v[0], v[2] - v[0]]).astype(np.float64)
    return math.log(np.linalg.det(e @ e.T) / 4 + 1e-4)  # V = √det G / 2!.

  step = jax.jit(subspace.make_vertex_step(model, tx, simplices,
                                           volume_weight=100.0))
  state = steps.init_state({'params': c2, 'batch_stats': {}}, tx)
  state, m = step(state, fixed, {}, digits.x_train[:64],
                  digits.y_train[:64], jax.random.key(1))
  assert float(m['log_sq_volume']) == pytest.approx(logsq(c2), rel=1e-4)
  assert logsq(state.params) > logsq(c2) + 0.01


# ------------------------------------------------------------ ensembles


def test_diversity_by_hand():
  p = np.zeros((2, 3, 2))
  p[0] = [[0.9, 0.1], [0.4, 0.6], [0.3, 0.7]]
  p[1] = [[0.6, 0.4], [0.8, 0.2], [0.1, 0.9]]
  cols = diversity.per_example(p, np.array([0, 0, 1]))
  s = diversity.summary(cols)
  # Mean probabilities [.75, .25], [.6, .4], [.2, .8]: all right.
  assert s['ensemble_error'] == 0.0
  assert s['member_error'] == pytest.approx(1 / 6)
  assert s['ensemble_nll'] == pytest.approx(-np.mean(np.log([.75, .6, .8])))
  assert s['disagreement'] == pytest.approx(1 / 3)  # Example 2 only.
  # Normalised by the members' error (Fort, Hu & Lakshminarayanan 2019).
  assert s['normalised_disagreement'] == pytest.approx((1 / 3) / (1 / 6))
  assert s['gain_error'] == pytest.approx(1 / 6)
  # JS and KL of each example, by the formulas.
  for n in range(3):
    a, b = p[0, n], p[1, n]
    mid = (a + b) / 2
    kl_ab = np.sum(a * np.log(a / b))
    kl_ba = np.sum(b * np.log(b / a))
    js = 0.5 * np.sum(a * np.log(a / mid)) + 0.5 * np.sum(
        b * np.log(b / mid))
    assert cols['kl'][n] == pytest.approx(0.5 * (kl_ab + kl_ba))
    assert cols['js'][n] == pytest.approx(js)


def test_weight_cosine_with_and_without_bn():
  """BN scales (all near 1 in every run) make the cosine look high; without
  them the runs are orthogonal here."""
  def net(v, w):
    return {'bn1': {'scale': np.full(4, 10.0), 'bias': np.zeros(4)},
            'conv1': {'kernel': np.array(v, float)},
            'head': {'kernel': np.array(w, float)}}
  c = ensembles.weight_cosines([net([1, 0], [1, 0]), net([0, 1], [0, 1])])
  assert c['bn'] == pytest.approx(1.0)
  assert c['without_bn'] == pytest.approx(0.0)
  assert c['classifier'] == pytest.approx(0.0)
  assert c['all'] == pytest.approx(400 / 402)


def test_espro_samples_every_simplex_and_averages(digits):
  """ESPRO's ensemble is the mean of the probabilities of every sample of
  every run's simplex; its samples are uniform on each simplex."""
  w = ensembles.draw_on_simplex(jax.random.key(3), 3, 4000)
  assert (w >= 0).all() and np.allclose(w.sum(1), 1.0)
  np.testing.assert_allclose(w.mean(0), [1 / 3] * 3, atol=0.02)
  assert np.mean(w[:, 0] > 0.5) == pytest.approx(0.25, abs=0.03)  # (1−½)².
  rng = np.random.default_rng(0)
  probs = rng.dirichlet(np.ones(3), size=(6, 20))  # 2 runs × 3 samples.
  y = rng.integers(0, 3, 20)
  row = ensembles.set_row('ESPRO', [str(i) for i in range(6)], probs, y,
                          None, {'forward_passes': 6})
  mean = probs.mean(0)
  assert row['ensemble_error'] == pytest.approx(np.mean(mean.argmax(1) != y))
  assert row['intervals']['ensemble_error']['mean'] == pytest.approx(
      row['ensemble_error'])
  lo, hi = row['intervals']['ensemble_error']['ci']
  assert 0.0 <= lo <= row['ensemble_error'] <= hi <= 1.0


def test_espro_vertex_grows_from_its_run(digits, tmp_path):
  """ESPRO's simplex around one run: vertex 1 starts at the run itself,
  the volume term is on from vertex 1, and it moves away."""
  model, sols = _solutions(digits, 1)
  added, history = connectors.train_vertices(
      model, digits, sols, {}, str(tmp_path), _settings(
          vertices=1, volume_from=1), sharding.make_mesh(0))
  assert history[0]['lambda'] > 0
  assert np.isfinite(history[0]['log_sq_volume'])
  assert not all(np.allclose(x, y) for x, y in zip(_leaves(added[0]),
                                                   _leaves(sols[0])))


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


def test_one_connector_is_refused():
  c = _config(['runs/a', 'runs/b', 'runs/c'])
  c.simplex.connectors = 1
  with pytest.raises(InputError, match=r'config\.simplex\.connectors=1'):
    probe_runner.validate(c)


def test_digits_config_trains_four_seeds():
  spec = importlib.util.spec_from_file_location(
      'probe_simplex', os.path.join(_REPO, 'configs', 'probe_simplex.py'))
  mod = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(mod)
  config = mod.get_config()
  runs = probe_runner.train_runs(config)
  assert [r.config.seed for r in runs] == [0, 1, 2, 3]
  assert [r.workdir for r in runs] == list(config.simplex.checkpoints)
  probe_runner.check_names(mod.get_config('cifar10'))
  probe_runner.check_names(mod.get_config('mnist1d'))


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
  c.simplex.update(resolution=2, path_resolution=1, epochs=1, samples=1,
                   samples_eval=3, connectors_dir=str(tmp_path / 'conns'))
  c.ensembles.update(members=2, espro_vertices=1, espro_epochs=1,
                     espro_samples=2)
  paths = probe_runner.run(c, str(tmp_path / 'probe'))
  res = load_json(paths['simplex'])
  s = res['simplex']
  ds = data.from_config(tiny_train_config().data)
  for w, err in zip(runs, s['vertices']['error']):
    v, cfg = checkpoint.restore_model(w)
    model = models.from_config(ml_collections.ConfigDict(cfg['model']),
                               ds.num_classes, ds.input_shape)
    assert err == pytest.approx(plain_loss_error(
        model, v['params'], ds.x_test, ds.y_test)[1], abs=1e-7)
  assert s['simplices'] == [[0, 3, 4], [1, 3, 4], [2, 3, 4]]
  assert s['two_solutions_in_a_simplex'] is False
  assert len(s['raw']['error'][0]) == 6 and len(s['trained']['faces']) == 3
  # 3 pairs × (raw edge, c1, c2, c̄); the per-example path values agree
  # with the sweep's at the vertices.
  assert len(s['paths']) == 12 and len(res['curves']) == 12
  for c_ in res['curves']:
    a = c_['pair'][0]
    assert c_['error'][0] == pytest.approx(s['vertices']['error'][a],
                                           abs=1e-7)
  assert {f['claim'][:20] for f in res['findings']} and all(
      isinstance(f['resolved'], bool) for f in res['findings'])
  assert res['err_table'] is False
  assert [r['vertex'] for r in s['connectors']['history']] == [1, 2]
  e = load_json(paths['ensembles'])
  assert [r['set'] for r in e['ensembles']['sets']] == [
      'seed0', 'seed1', 'seed2', 'deep ensemble', 'ESPRO',
      'SPRO of seed0', 'trajectory', 'complex samples'] or len(
          e['ensembles']['sets']) == 8
  espro = e['ensembles']['sets'][4]
  assert len(espro['members']) == 4 and espro['compute'][
      'forward_passes'] == 4
  assert e['findings'] and e['err_table'] is False
  # Diversity rankings: all recorded; only resolved ones are findings.
  ranking = e['ensembles']['diversity_ranking']
  assert ranking and all('resolved' in f for f in ranking)
  assert [f['claim'] for f in e['findings'] if 'diverse' in f['claim']] == [
      f['claim'] for f in ranking if f['resolved']]
  assert (tmp_path / 'probe' / 'simplex' / 'figure.png').exists()
  assert (tmp_path / 'probe' / 'ensembles' / 'figure.png').exists()
  # Run again: nothing is recomputed.
  again = probe_runner.run(c, str(tmp_path / 'probe'))
  assert load_json(again['simplex'])['simplex'] == s
