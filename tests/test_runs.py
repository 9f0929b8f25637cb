"""probe/studies/runs.py: the kinds of several runs (bn_init, hparams,
interpolate) end to end, and their bad input."""

import jax
import ml_collections
import numpy as np
import pytest
from conftest import (check_curve_schema as _check_schema,
                      kinds_probe_config as _config, load_json as _load,
                      plain_loss_error, tiny_train_config)

from valley_jax import checkpoint, data, defaults, models, outputs
from valley_jax.core import sweep
from valley_jax.probe import runner as probe_runner
from valley_jax.train import runner as train_runner


@pytest.fixture(scope='module')
def runs(tmp_path_factory):
  """Three 1-epoch runs with the three BN inits, and a wider model."""
  out = {}
  for name, variant in (('ones', ''), ('uniform', 'bninit_uniform'),
                        ('gaussian', 'bninit_gaussian'), ('wide', '')):
    c = defaults.apply_variant(tiny_train_config(epochs=1), variant)
    c.data.n_train = 256
    if name == 'wide':
      c.model.width = 0.25
    out[name] = str(tmp_path_factory.mktemp(name))
    train_runner.run(c, out[name])
  return out


@pytest.mark.slow
def test_multi_checkpoint_kinds(runs, trained_mlp, tmp_path):
  c = _config(trained_mlp, 'bn_init,hparams,interpolate')
  c.bn_init.checkpoints = (runs['ones'], runs['uniform'], runs['gaussian'])
  c.bn_init.labels = ('ones', 'U(0,1)', 'G(0,0.1)')
  c.hparams.checkpoints = (runs['ones'], trained_mlp)
  c.interpolate.checkpoint_a = runs['ones']
  c.interpolate.checkpoint_b = trained_mlp
  c.interpolate.num_points = 7
  paths = probe_runner.run(c, str(tmp_path))
  bn = _load(paths['bn_init'])
  _check_schema(bn, 'bn_init')
  assert len(bn['curves']) == 6  # 3 runs x {NS, filter NS}.
  assert {c['normalization'] for c in bn['curves']} == {'ns', 'filter'}
  h = bn['histograms'][0]
  assert h['layer'] == 'bn1' and set(h['init']) == {1.0}  # ones at init.
  assert min(bn['histograms'][1]['init']) >= 0  # U(0, 1).
  assert (tmp_path / 'bn_init' / 'figure_hist.png').exists()
  hp = _load(paths['hparams'])
  assert len(hp['curves']) == 4
  ip = _load(paths['interpolate'])
  _check_schema(ip, 'interpolate')
  lams = ip['curves'][0]['lambdas']
  assert lams[0] == -1.0 and lams[-1] == 2.0
  st = ip['statistics']['groups']
  assert set(st) >= {'BN Weight', 'CLF Weight', 'CLF Bias', 'Other Weight',
                     'Other Bias', 'ALL'}
  # SSR(θA, θB − θA) over every parameter, by plain numpy.
  pa = checkpoint.restore_model(runs['ones'])[0]['params']
  pb = checkpoint.restore_model(trained_mlp)[0]['params']
  a = np.concatenate([np.ravel(x) for x in jax.tree.leaves(pa)])
  b = np.concatenate([np.ravel(x) for x in jax.tree.leaves(pb)])
  assert st['ALL']['ssr_a'] == pytest.approx(
      np.mean(np.sign(a) == np.sign(b - a)), abs=1e-6)


def _no_compile(*a, **k):
  raise AssertionError('a sweep was built before the input was checked')


@pytest.mark.slow
def test_interpolate_needs_the_same_model(runs, tmp_path, monkeypatch):
  monkeypatch.setattr(sweep, 'make_sweep', _no_compile)
  c = _config(runs['ones'], 'interpolate')
  c.interpolate.checkpoint_a = runs['ones']
  c.interpolate.checkpoint_b = runs['wide']
  with pytest.raises(ValueError, match='same model'):
    probe_runner.run(c, str(tmp_path))


@pytest.mark.slow
def test_multi_checkpoint_kinds_need_checkpoints(trained_mlp, tmp_path):
  with pytest.raises(ValueError, match='checkpoints is empty'):
    probe_runner.run(_config(trained_mlp, 'hparams'), str(tmp_path))


@pytest.mark.slow
def test_interpolation_endpoints_and_midpoint(tmp_path):
  runs = {}
  for name, seed in (('a', 0), ('b', 1)):
    cfg = tiny_train_config(epochs=1, bn=False)
    cfg.seed = seed
    runs[name] = str(tmp_path / name)
    train_runner.run(cfg, runs[name])
  c = defaults.probe_config('')
  c.kind = 'interpolate'
  c.interpolate.update(checkpoint_a=runs['a'], checkpoint_b=runs['b'],
                       lam_min=0.0, lam_max=1.0, num_points=5)
  c.sweep.eval_batch_size = 360
  res = outputs.read_json(probe_runner.run(c, str(tmp_path / 'p'))[
      'interpolate'])
  curve = res['curves'][0]
  assert curve['lambdas'] == [0.0, 0.25, 0.5, 0.75, 1.0]
  (va, cfg), (vb, _) = (checkpoint.restore_model(runs[k]) for k in 'ab')
  ds = data.from_config(ml_collections.ConfigDict(cfg['data']))
  model = models.from_config(ml_collections.ConfigDict(cfg['model']),
                             ds.num_classes, ds.input_shape)
  for i, lam in enumerate(curve['lambdas']):
    params = jax.tree.map(lambda a, b: (1 - lam) * a + lam * b,
                          va['params'], vb['params'])
    loss, err = plain_loss_error(model, params, ds.x_test, ds.y_test)
    np.testing.assert_allclose(curve['loss'][i], loss, rtol=2e-4)
    assert abs(curve['error'][i] - err) <= 1.5 / len(ds.y_test)
  # The two ends are the runs themselves, and they differ.
  assert curve['loss'][0] != curve['loss'][-1]
  # The barrier finding's statistic, from the curve by hand.
  (f,) = res['findings']
  e = curve['error']
  assert f['mean'] == pytest.approx(max(e[1:4]) - max(e[0], e[4]))
  assert f['n'] == 1 and f['n_examples'] == 360


def test_train_seeds_replicate_every_run(tmp_path):
  """config.train_seeds = 3: each entry of train_runs trains three runs
  (seed, seed + 1, seed + 2), and each workdir of a multi-run block stands
  for its three replicas."""
  c = defaults.probe_config(str(tmp_path / 'none'))
  c.kind = 'hparams'
  c.train_seeds = 3
  c.train_runs = (f'{tmp_path}/a=configs/digits_cnn.py:seed3',)
  c.hparams.checkpoints = (f'{tmp_path}/a',)
  runs = probe_runner.train_runs(c)
  assert [r.workdir for r in runs] == [f'{tmp_path}/a', f'{tmp_path}/a_seed1',
                                       f'{tmp_path}/a_seed2']
  assert [r.config.seed for r in runs] == [3, 4, 5]
  from valley_jax.probe import registry  # pylint: disable=g-import-not-at-top
  assert [w for w, _ in registry.STUDIES['hparams'].checkpoints(c)] == [
      r.workdir for r in runs]


@pytest.mark.slow
def test_runs_over_training_seeds(runs, tmp_path):
  """With train_seeds = 2 each curve's seeds are the runs (draws averaged
  within a run), and hparams' findings are paired over them."""
  import shutil  # pylint: disable=g-import-not-at-top
  for name in ('ones', 'uniform'):
    shutil.copytree(runs[name], runs[name] + '_seed1', dirs_exist_ok=True)
  c = _config(runs['ones'], 'hparams')
  c.train_seeds, c.seeds = 2, 2
  c.hparams.checkpoints = (runs['ones'], runs['uniform'])
  hp = _load(probe_runner.run(c, str(tmp_path))['hparams'])
  assert len(hp['curves']) == 4
  cv = hp['curves'][0]
  assert cv['seeds'] == 2 and cv['draws'] == 2
  assert cv['runs'] == [runs['ones'], runs['ones'] + '_seed1']
  # The copies are the same run: both seeds give the same value.
  assert cv['diff']['per_seed'][0] == pytest.approx(cv['diff']['per_seed'][1])
  assert len(hp['findings']) == 4 and all(
      f['n'] == 2 for f in hp['findings'])
