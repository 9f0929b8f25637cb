"""Issue 10: compiled direction builders, BN folding, precision, batch sizes,
figure formats and the compilation cache, each against its plain path."""

import flax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from valley_jax import compile_cache, defaults, models, plots
from valley_jax.core import directions, groups, normalize, sweep, tree
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


def test_ratio_zero_and_one_are_plain_and_sign_consistent(trained_mlp):
  """r = 0 chooses no element and r = 1 every one (Bernoulli(0), (1))."""
  p, s = _prober_and_subject(trained_mlp)
  for r, sc in ((0.0, False), (1.0, True)):
    got = common.make_direction(p, s, 1, noise='gaussian', ratio=r)
    _assert_trees_close(got, _eager(p, s, 1, 'gaussian', sc))


def test_special_directions_compiled_by_hand(trained_mlp):
  p, s = _prober_and_subject(trained_mlp)
  for name in directions.SPECIAL[1:]:
    got = common.make_direction(p, s, 0, special=name, normalization='none')
    _assert_trees_close(got, directions.special(name, s.params), rtol=1e-5)
  sign = common.make_direction(p, s, 0, special='sign', normalization='none')
  _assert_trees_close(sign, tree.sign(s.params))
  theta = common.make_direction(p, s, 0, special='theta', normalization='ns')
  _assert_trees_close(theta, s.params, rtol=1e-5)  # ||θ|| / ||θ|| = 1.


def _bn_model_and_data(name, **kw):
  m = models.build_model(name, 10, **kw)
  shape = (12,) if name == 'mlp' else (8, 8, 3)
  rng = np.random.default_rng(0)
  x = rng.normal(size=(48, *shape)).astype(np.float32)
  y = (np.arange(48) % 10).astype(np.int32)
  v = m.init(jax.random.key(0), x[:1])
  # BN statistics, scales and shifts far from identity, so folding matters.
  v = jax.jit(lambda v: jax.tree.map(
      lambda a: a + 0.5 * jax.random.uniform(jax.random.key(a.size), a.shape),
      v))(v)
  return m, v, x, y, shape


def test_bn_pairs_of_an_mlp():
  m = models.build_model('mlp', 10, hidden=(16, 8))
  v = jax.eval_shape(m.init, jax.random.key(0), jnp.zeros((1, 12)))
  assert sweep.bn_pairs(m, v, (12,)) == {
      ('bn1',): (('dense1',), 1e-5), ('bn2',): (('dense2',), 1e-5)}


def test_fold_of_one_layer_by_hand():
  """Dense then BN: W·s and β − μ·s, s = γ/√(σ² + ε)."""
  params = {'dense1': {'kernel': jnp.array([[1.0, 2.0]]),
                       'bias': jnp.array([1.0, -1.0])},
            'bn1': {'scale': jnp.array([2.0, 1.0]),
                    'bias': jnp.array([0.5, 0.0])}}
  stats = {'bn1': {'mean': jnp.array([1.0, 3.0]),
                   'var': jnp.array([1.0 - 1e-5, 4.0 - 1e-5])}}
  out, shifts = sweep.fold_bn(params, stats,
                              {('bn1',): (('dense1',), 1e-5)})
  # s = γ/√(σ² + ε) = (2/1, 1/2).
  np.testing.assert_allclose(out['dense1']['kernel'], [[2.0, 1.0]], rtol=1e-6)
  np.testing.assert_allclose(out['dense1']['bias'], [2.0, -0.5], rtol=1e-6)
  np.testing.assert_allclose(shifts[('bn1',)], [0.5 - 2.0, 0.0 - 1.5],
                             rtol=1e-6)


@pytest.mark.parametrize('name,size', [('resnet20', 8), ('resnet18', 32)])
def test_every_bn_of_a_resnet_is_paired(name, size):
  """Stem, both convs of each block and the projection shortcuts."""
  m = models.build_model(name, 10, width=0.125)
  v = jax.eval_shape(m.init, jax.random.key(0), jnp.zeros((1, size, size, 3)))
  pairs = sweep.bn_pairs(m, v, (size, size, 3))
  assert set(pairs) == {k[:-1] for k in flax.traverse_util.flatten_dict(
      v['batch_stats'])}
  assert pairs[('layer2_0', 'bn2')][0] == ('layer2_0', 'conv2')
  if name == 'resnet18':
    assert pairs[('layer2_0', 'bn_shortcut')][0] == ('layer2_0',
                                                     'conv_shortcut')


@pytest.mark.parametrize('name,kw,recal', [
    ('mlp', dict(hidden=(16, 8)), False), ('cnn', dict(width=0.125), True)])
def test_folded_sweep_equals_unfolded(name, kw, recal):
  """The folded path against the reference (unfolded), float32/HIGHEST."""
  m, v, x, y, _ = _bn_model_and_data(name, **kw)
  ev = sweep.make_batches(x, y, 16)
  rx = sweep.make_recal_batches(x, 48, 24) if recal else None
  d = normalize.normalize(
      directions.sample('gaussian', jax.random.key(1), v['params']),
      v['params'])
  coeffs = np.linspace(-0.5, 0.5, 3)[:, None]
  out = [sweep.make_sweep(m, recal=recal, precision='highest', fold=f)(
      v['params'], v['batch_stats'], [d], coeffs, ev, rx) for f in (0, 1)]
  np.testing.assert_allclose(out[1]['loss'], out[0]['loss'], rtol=2e-6)
  np.testing.assert_allclose(out[1]['error'], out[0]['error'], atol=1e-6)


def test_float32_sweeps_trace_at_highest_precision(monkeypatch):
  seen = []
  original = sweep.evaluate
  monkeypatch.setattr(sweep, 'evaluate', lambda *a, **k: seen.append(
      jax.config.jax_default_matmul_precision) or original(*a, **k))
  m, v, x, y, _ = _bn_model_and_data('mlp', hidden=(4,))
  ev = sweep.make_batches(x, y, 16)
  for dtype in ('float32', 'tf32'):
    sweep.make_sweep(m, precision=prober.PRECISIONS[dtype])(
        v['params'], v['batch_stats'], [v['params']], np.zeros((1, 1)), ev)
  assert seen == ['highest', None]


def test_batch_sizes_for_the_device():
  c = defaults.probe_config()
  assert prober.batch_sizes(c, 'gpu') == (2500, 2000)
  assert prober.batch_sizes(c, 'cpu') == (1000, 500)
  c.sweep.eval_batch_size, c.sweep.recal_batch_size = 300, 100
  assert prober.batch_sizes(c, 'gpu') == (300, 100)


def test_string_fields_fail_early():
  c = defaults.probe_config()
  c.figure_formats = 'png,jpeg'
  with pytest.raises(ValueError, match='config.figure_formats'):
    probe_runner.check_names(c)
  c.figure_formats = 'PNG, pdf'
  assert probe_runner.figure_formats(c) == ('png', 'pdf')
  c.sweep.dtype = 'tf32'
  probe_runner.check_names(c)
  c.sweep.dtype = 'fp32'
  with pytest.raises(ValueError, match='config.sweep.dtype'):
    probe_runner.check_names(c)


def test_figure_formats(tmp_path):
  res = {'kind': 'k', 'model': 'm', 'dataset': 'd', 'curves': [
      {'label': 'a', 'panel': 'p', 'lambdas': [0, 1], 'loss': [1, 2],
       'error': [0.1, 0.2]}]}
  with plots.formats(('pdf',)):
    assert [p.rsplit('.', 1)[1] for p in plots.curve_panels(
        res, str(tmp_path))] == ['pdf']
  assert plots.current_formats() == ('png', 'pdf')


def test_compile_cache_dir(tmp_path, monkeypatch):
  monkeypatch.setenv(compile_cache.ENV, str(tmp_path / 'env'))
  assert compile_cache.default_dir() == str(tmp_path / 'env')
  try:
    path = compile_cache.enable('default', min_compile_secs=0)
    assert path == str(tmp_path / 'env')
    jax.jit(lambda a: a * 3.0 + 1.0)(jnp.arange(7.0)).block_until_ready()
    assert any((tmp_path / 'env').iterdir())
  finally:
    assert compile_cache.enable('none') is None
  assert jax.config.jax_compilation_cache_dir is None
  with pytest.raises(ValueError, match='compile_cache'):
    compile_cache.check(3)


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
