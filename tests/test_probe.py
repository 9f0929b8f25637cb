"""probe_runner.run: every kind end to end, the schema, and bad input."""

import json

import pytest
from conftest import patch_study_run, tiny_train_config

from valley_jax import defaults
from valley_jax.core import sweep
from valley_jax.probe import prober, registry
from valley_jax.probe import runner as probe_runner
from valley_jax.train import runner as train_runner

_CURVE_KEYS = {'label', 'direction', 'sign_consistent', 'ratio', 'scale',
               'normalization', 'group', 'seeds', 'lambdas', 'loss', 'error'}


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


def _config(checkpoint_dir, kind):
  c = defaults.probe_config(checkpoint_dir)
  c.kind = kind
  c.sweep.num_points = 5
  c.sweep.recal_samples = 200
  c.sweep.recal_batch_size = 200
  c.sweep.eval_batch_size = 360
  c.noise_types.noises = ('gaussian', 'binary')
  c.noise_types.scales = (1.0,)
  c.sign_ratio.ratios = (0.0, 0.5, 1.0)
  c.groups.groups = ('ALL', 'CLF', 'BN')
  c.surface.num_points = 3
  return c


def _load(path):
  with open(path) as f:
    return json.load(f)


def _check_schema(res, kind):
  assert res['kind'] == kind
  assert {'model', 'dataset', 'checkpoint', 'config', 'curves'} <= set(res)
  for c in res['curves']:
    assert _CURVE_KEYS <= set(c), _CURVE_KEYS - set(c)
    assert len(c['loss']) == len(c['error']) == len(c['lambdas'])


def test_single_checkpoint_kinds(trained_mlp, tmp_path, capsys):
  kinds = 'noise_types,sign_ratio,special,groups,surface'
  c = _config(trained_mlp, kinds)
  c.seeds = 2
  paths = probe_runner.run(c, str(tmp_path))
  for kind in kinds.split(','):
    res = _load(paths[kind])
    _check_schema(res, kind)
    assert (tmp_path / kind / 'figure.png').exists()
    # PNG by default; config.figure_formats='png,pdf' adds PDF.
    assert not (tmp_path / kind / 'figure.pdf').exists()
    assert res['precision'] == {'dtype': 'float32', 'compute_dtype': 'float32',
                                'matmul_precision': 'highest',
                                'fold_bn': True}
    assert res['batch_sizes'] == {'eval': 360, 'recal': 200}
  nt = _load(paths['noise_types'])
  assert len(nt['curves']) == 4  # 2 noises x {plain, sign-consistent}.
  assert nt['curves'][0]['seeds'] == 2 and 'error_std' in nt['curves'][0]
  sr = _load(paths['sign_ratio'])
  assert sr['summary']['ratios'] == [0.0, 0.5, 1.0]
  assert [c['ratio'] for c in sr['curves']] == [0.0, 0.5, 1.0]
  sp = _load(paths['special'])
  assert [c['direction'] for c in sp['curves']] == list(
      c.special.directions)
  gr = _load(paths['groups'])
  assert {c['group'] for c in gr['curves']} == {'ALL', 'CLF', 'BN'}
  su = _load(paths['surface'])
  assert len(su['surface']['loss']) == 3 and len(su['surface']['loss'][0]) == 3
  # The table: one row per curve with the two halves and their difference.
  out = capsys.readouterr().out
  assert 'err+' in out and '|G(0,1)|·sign(θ)' in out


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
  assert 0.0 <= st['ALL']['ssr_a'] <= 1.0


def test_non_finite_values_become_null(trained_mlp, tmp_path):
  c = _config(trained_mlp, 'noise_types')
  c.noise_types.noises = ('ones',)
  c.noise_types.scales = (1e38,)
  c.sweep.recal = 'off'
  path = probe_runner.run(c, str(tmp_path))['noise_types']
  res = _load(path)
  losses = res['curves'][0]['loss']
  assert None in losses and losses[2] is not None  # λ = 0 stays finite.
  assert (tmp_path / 'noise_types' / 'figure.png').exists()


def test_main_job_trains_when_missing(tmp_path):
  c = _config(str(tmp_path / 'default'), 'noise_types,sign_ratio,special')
  c.train_if_missing = c.checkpoint
  c.train = tiny_train_config(epochs=1)
  paths = probe_runner.run(c, str(tmp_path / 'probe'))
  assert set(paths) == {'noise_types', 'sign_ratio', 'special'}
  assert (tmp_path / 'default' / 'metrics.jsonl').exists()


@pytest.mark.parametrize('key,value,match', [
    ('kind', 'valleys', 'Unknown probe kind'),
    ('normalization', 'batch', 'Unknown normalization'),
    ('noise_types.noises', ('cauchy',), 'Unknown noise'),
    ('groups.groups', ('EMBED',), 'Unknown parameter group'),
    ('special.directions', ('grad',), 'Unknown special'),
    ('sweep.num_points', 0, r'sweep\.num_points=0 must be an integer'),
    ('sweep.lam_min', 2.0, 'Empty or invalid'),
    ('epoch', '99', 'not kept'),
    ('sweep.dtype', 'float8', 'Unknown dtype'),
])
def test_bad_input_fails_before_compiling(trained_mlp, tmp_path, monkeypatch,
                                          key, value, match):
  monkeypatch.setattr(sweep, 'make_sweep', _no_compile)
  c = _config(trained_mlp, 'noise_types,groups,special')
  parts = key.split('.')
  target = c
  for p in parts[:-1]:
    target = target[p]
  target[parts[-1]] = value
  with pytest.raises((ValueError, FileNotFoundError), match=match):
    probe_runner.run(c, str(tmp_path))
  assert not list(tmp_path.iterdir())


def _no_compile(*a, **k):
  raise AssertionError('a sweep was built before the input was checked')


def test_missing_checkpoint(tmp_path, monkeypatch):
  monkeypatch.setattr(sweep, 'make_sweep', _no_compile)
  with pytest.raises(FileNotFoundError, match='holds no checkpoint'):
    probe_runner.run(_config(str(tmp_path / 'nothing'), 'special'),
                     str(tmp_path / 'out'))


def test_interpolate_needs_the_same_model(runs, tmp_path, monkeypatch):
  monkeypatch.setattr(sweep, 'make_sweep', _no_compile)
  c = _config(runs['ones'], 'interpolate')
  c.interpolate.checkpoint_a = runs['ones']
  c.interpolate.checkpoint_b = runs['wide']
  with pytest.raises(ValueError, match='same model'):
    probe_runner.run(c, str(tmp_path))


def test_multi_checkpoint_kinds_need_checkpoints(trained_mlp, tmp_path):
  with pytest.raises(ValueError, match='checkpoints is empty'):
    probe_runner.run(_config(trained_mlp, 'hparams'), str(tmp_path))


def test_model_without_bn(tmp_path):
  """No BN: recalibration is off by default and the BN group is skipped."""
  train_dir = str(tmp_path / 'nobn')
  train_runner.run(tiny_train_config(epochs=1, bn=False), train_dir)
  c = _config(train_dir, 'groups')
  p = prober.Prober(c)
  assert p.subject(train_dir).sweep.recal_x is None
  res = _load(probe_runner.run(c, str(tmp_path / 'probe'))['groups'])
  assert {cv['group'] for cv in res['curves']} == {'ALL', 'CLF'}
  c.kind = 'bn_init'
  c.bn_init.checkpoints = (train_dir,)
  with pytest.raises(ValueError, match='needs models with BatchNorm'):
    probe_runner.run(c, str(tmp_path / 'probe2'))


def test_finished_kinds_are_not_recomputed(trained_mlp, tmp_path,
                                           monkeypatch):
  c = _config(trained_mlp, 'special,sign_ratio')
  first = probe_runner.run(c, str(tmp_path))
  before = _load(first['special'])
  (tmp_path / 'sign_ratio' / 'results.json').unlink()  # "Interrupted" here.
  calls = []
  original = registry.STUDIES['sign_ratio'].run
  special = registry.STUDIES['special'].run
  patch_study_run(monkeypatch, 'special', _no_compile)
  patch_study_run(monkeypatch, 'sign_ratio',
                  lambda *a: calls.append(1) or original(*a))
  second = probe_runner.run(c, str(tmp_path))
  assert calls == [1]  # Only the unfinished kind ran again.
  assert _load(second['special']) == before
  assert _load(second['sign_ratio'])['summary']['ratios'] == [0.0, 0.5, 1.0]
  c.sweep.num_points = 3  # Another config recomputes.
  patch_study_run(monkeypatch, 'special', special)
  third = _load(probe_runner.run(c, str(tmp_path))['special'])
  assert len(third['curves'][0]['lambdas']) == 3
