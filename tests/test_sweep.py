"""core/sweep.py: the sweep engine against plain references and hand
computations; BN pairs and folding; the precision of float32 sweeps."""

import flax
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import tiny_train_config

from valley_jax import checkpoint, data, defaults, models, sharding
from valley_jax.core import directions, normalize, steps, sweep
from valley_jax.probe import prober
from valley_jax.probe.studies import common


@pytest.fixture(scope='module')
def setup(trained_mlp):
  v, _ = checkpoint.restore_model(trained_mlp)
  ds = data.load_digits()
  model = models.from_config(tiny_train_config().model, ds.num_classes,
                             ds.input_shape)
  p = v['params']
  d1 = normalize.normalize(directions.sign_consistent(
      directions.sample('gaussian', jax.random.key(0), p), p), p)
  d2 = normalize.normalize(
      directions.sample('uniform', jax.random.key(1), p), p, 'filter')
  return model, v, ds, d1, d2


@pytest.mark.slow
def test_lambda_zero_equals_plain_evaluation(setup):
  model, v, ds, d1, _ = setup
  mesh = sharding.make_mesh(1)
  ev = sweep.make_batches(ds.x_test, ds.y_test, 100, mesh)
  out = sweep.make_sweep(model, mesh=mesh)(
      v['params'], v['batch_stats'], [d1], np.zeros((1, 1)), ev)
  plain = steps.evaluate(jax.jit(steps.make_eval_step(model, (0.,),
                                                      (1.,))),
                             mesh, v['params'], v['batch_stats'], ds.x_test,
                             ds.y_test, 120)
  assert float(out['error'][0]) == pytest.approx(1 - plain['accuracy'])
  assert float(out['loss'][0]) == pytest.approx(plain['loss'], rel=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize('recal', [False, True])
@pytest.mark.parametrize('chunk', [1, 3, 7])
def test_fast_sweep_equals_reference(setup, recal, chunk):
  model, v, ds, d1, d2 = setup
  coeffs = np.array([[-1.0, 0.0], [-0.3, 0.5], [0.0, 0.0], [0.4, -0.2],
                     [1.0, 1.0], [2.0, 0.1], [0.7, -1.0]])
  x_recal = ds.x_train[:300]
  ev = sweep.make_batches(ds.x_test, ds.y_test, 128)  # Padded last batch.
  rx = sweep.make_recal_batches(x_recal, 300, 100) if recal else None
  fast = sweep.make_sweep(model, recal=recal, chunk=chunk)(
      v['params'], v['batch_stats'], [d1, d2], coeffs, ev, rx)
  ref = sweep.sweep_reference(
      model, v['params'], v['batch_stats'], [d1, d2], coeffs, ds.x_test,
      ds.y_test, 50, x_recal if recal else None, 100)
  np.testing.assert_allclose(fast['loss'], ref['loss'], rtol=2e-4)
  np.testing.assert_allclose(fast['error'], ref['error'], atol=1e-6)


@pytest.mark.slow
@pytest.mark.parametrize('recal', [False, True])
def test_streamed_evaluation_equals_reference(setup, recal):
  """Data left on the host, 4 batches per call (the last group padded)."""
  model, v, ds, d1, d2 = setup
  coeffs = np.array([[-1.0, 0.0], [0.0, 0.0], [0.4, -0.2], [1.0, 1.0]])
  mesh = sharding.make_mesh(2)
  ev = sweep.make_batches(ds.x_test, ds.y_test, 64, mesh, stream=4)
  num_groups = -(-len(ds.y_test) // (64 * 4))
  assert len(ds.y_test) % (64 * 4)  # The last group has padding batches.
  assert isinstance(ev, sweep.HostBatches)
  groups = list(ev.groups())
  assert [g.x.shape[:2] for g, _ in groups] == [(4, 64)] * num_groups
  assert sum(n for _, n in groups) == len(ds.y_test)
  rx = (sweep.make_recal_batches(ds.x_train[:300], 300, 100, mesh)
        if recal else None)
  got = sweep.make_sweep(model, recal=recal, mesh=mesh, fold=True)(
      v['params'], v['batch_stats'], [d1, d2], coeffs, ev, rx)
  ref = sweep.sweep_reference(
      model, v['params'], v['batch_stats'], [d1, d2], coeffs, ds.x_test,
      ds.y_test, 50, ds.x_train[:300] if recal else None, 100)
  np.testing.assert_allclose(got['loss'], ref['loss'], rtol=2e-4)
  np.testing.assert_allclose(got['error'], ref['error'], atol=1e-6)


@pytest.mark.slow
def test_eight_devices_equal_one(setup):
  model, v, ds, d1, _ = setup
  coeffs = np.linspace(-1, 1, 5)[:, None]
  outs = []
  for n in (1, 8):
    mesh = sharding.make_mesh(n)
    ev = sweep.make_batches(ds.x_test, ds.y_test, 120, mesh)
    rx = sweep.make_recal_batches(ds.x_train, 400, 200, mesh)
    fn = sweep.make_sweep(model, recal=True, mesh=mesh)
    outs.append(fn(v['params'], v['batch_stats'], [d1], coeffs, ev, rx))
  np.testing.assert_allclose(outs[0]['loss'], outs[1]['loss'], rtol=1e-4)
  np.testing.assert_allclose(outs[0]['error'], outs[1]['error'], atol=1e-6)


def _bn_numpy(h):
  mean, var = h.mean(0), h.var(0)
  return mean, var


def test_recalibration_matches_direct_statistics():
  """Two BN layers, two batches: statistics computed by hand in numpy."""
  model = models.build_model('mlp', 3, hidden=(6, 5), bn=True)
  x = np.random.default_rng(0).normal(size=(40, 4)).astype(np.float32)
  v = model.init(jax.random.key(3), x[:1])
  p = jax.tree.map(np.asarray, v['params'])
  stats = sweep.recalibrate(model, v['params'], v['batch_stats'],
                            jnp.asarray(x.reshape(2, 20, 4)))
  # Layer 1 sees raw inputs: whole-set statistics of x @ W1 + b1.
  h1 = x @ p['dense1']['kernel'] + p['dense1']['bias']
  m1, v1 = _bn_numpy(h1)
  np.testing.assert_allclose(stats['bn1']['mean'], m1, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(stats['bn1']['var'], v1, rtol=1e-4, atol=1e-6)
  # Layer 2 sees layer 1 normalised with each batch's own statistics (train
  # mode), then its statistics are taken over the whole set.
  h2 = []
  for b in np.split(h1, 2):
    bm, bv = _bn_numpy(b)
    a = (b - bm) / np.sqrt(bv + 1e-5) * p['bn1']['scale'] + p['bn1']['bias']
    h2.append(np.maximum(a, 0) @ p['dense2']['kernel'] + p['dense2']['bias'])
  m2, v2 = _bn_numpy(np.concatenate(h2))
  np.testing.assert_allclose(stats['bn2']['mean'], m2, rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(stats['bn2']['var'], v2, rtol=1e-4, atol=1e-5)


@pytest.mark.slow
def test_recal_at_lambda_zero_reproduces_training_statistics(setup):
  """On one batch, recalibration equals the batch statistics flax computes."""
  model, v, ds, d1, _ = setup
  x = jnp.asarray(ds.x_train[:256])
  stats = sweep.recalibrate(model, v['params'], v['batch_stats'],
                            x[None])
  zero = jax.tree.map(jnp.zeros_like, v['batch_stats'])
  _, upd = model.apply({'params': v['params'], 'batch_stats': zero}, x,
                       train=True, mutable=['batch_stats'])
  # Running stats updated from zero are (1 - momentum) * batch statistics.
  expected = jax.tree.map(lambda a: a / 0.1, upd['batch_stats'])
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4,
                                                       atol=1e-6),
               stats, expected)


@pytest.mark.slow
def test_bf16_close_to_fp32(setup):
  model, v, ds, d1, _ = setup
  ev = sweep.make_batches(ds.x_test, ds.y_test, 120)
  coeffs = np.linspace(-0.5, 0.5, 3)[:, None]
  f32 = sweep.make_sweep(model)(v['params'], v['batch_stats'], [d1],
                                coeffs, ev)
  b16 = sweep.make_sweep(model, dtype=jnp.bfloat16)(
      v['params'], v['batch_stats'], [d1], coeffs, ev)
  np.testing.assert_allclose(b16['loss'], f32['loss'], rtol=0.05)
  np.testing.assert_allclose(b16['error'], f32['error'], atol=0.03)


@pytest.mark.slow
def test_sweep_compiles_once_for_many_calls(setup, monkeypatch):
  """New directions and λ values of the same shape reuse the executable."""
  model, v, ds, d1, d2 = setup
  traces = []
  original = sweep.evaluate
  monkeypatch.setattr(sweep, 'evaluate',
                      lambda *a, **k: traces.append(1) or original(*a, **k))
  ev = sweep.make_batches(ds.x_test, ds.y_test, 120)
  fn = sweep.make_sweep(model, chunk=2)
  coeffs = np.linspace(-1, 1, 4)[:, None]
  first = fn(v['params'], v['batch_stats'], [d1], coeffs, ev)
  n = len(traces)
  assert n >= 1
  second = fn(v['params'], v['batch_stats'], [d2], coeffs * 0.5, ev)
  assert len(traces) == n
  assert not np.allclose(first['loss'], second['loss'])


def test_auto_chunk():
  conv = {'k': jnp.zeros((3, 3, 4, 8))}
  dense = {'k': jnp.zeros((100, 100))}
  assert sweep.auto_chunk(conv, 41) == 1
  assert sweep.auto_chunk(dense, 41) == 41


def test_linspace_coefficients_carry_the_scale():
  lams, coeffs = sweep.linspace_coeffs(-1.0, 1.0, 5, scale=0.2)
  np.testing.assert_allclose(lams, [-1.0, -0.5, 0.0, 0.5, 1.0])
  np.testing.assert_allclose(coeffs, [[-0.2], [-0.1], [0.0], [0.1], [0.2]])


def test_bad_ranges_and_shapes():
  with pytest.raises(ValueError, match='Empty or invalid'):
    sweep.linspace_coeffs(1.0, -1.0, 5)
  with pytest.raises(ValueError, match='Empty or invalid'):
    sweep.linspace_coeffs(-1.0, 1.0, 0)
  with pytest.raises(ValueError, match='multiple'):
    sweep.make_recal_batches(np.zeros((10, 2)), 10, 4)


@pytest.mark.slow
def test_finding_on_digits(trained_mlp):
  """Sign-consistent noise: flatter positive side; G(0,1): nearly symmetric."""
  c = defaults.probe_config(trained_mlp)
  c.sweep.num_points = 11
  c.sweep.recal_samples = 480
  c.sweep.recal_batch_size = 240
  p = prober.Prober(c)
  s = p.subject(trained_mlp)
  plain = common.noise_line(p, s, 'gaussian', False, 'G')
  sc = common.noise_line(p, s, 'gaussian', True, 'G')
  assert sc['negative_error'] - sc['positive_error'] > 0.2
  assert abs(plain['negative_error'] - plain['positive_error']) < 0.1


# ---------------------------------------------------- BN folding and precision


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


@pytest.mark.slow
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


@pytest.mark.slow
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


class _UserNet(flax.linen.Module):
  """A user's model: flax's own BatchNorm at the given momentum (None: no
  BN), not the registry's layers."""

  momentum: float | None

  @flax.linen.compact
  def __call__(self, x, train: bool = False):
    nn = flax.linen
    h = nn.Dense(6)(x)
    if self.momentum is not None:
      kw = {} if self.momentum == 0.99 else {'momentum': self.momentum}
      h = nn.BatchNorm(use_running_average=not train, **kw)(h)
    return nn.Dense(3)(nn.relu(h))


def _numpy_recal_eval(p, x_recal, x, y, bn: bool):
  """Exact recalibration and evaluation in float64 numpy."""
  p = jax.tree.map(lambda a: np.asarray(a, np.float64), p)
  dense = lambda a, q: a @ q['kernel'] + q['bias']
  h = dense(x, p['Dense_0'])
  if bn:
    hr = dense(np.asarray(x_recal, np.float64), p['Dense_0'])
    m, v = hr.mean(0), hr.var(0)  # Equal batches: whole-set moments.
    h = (h - m) / np.sqrt(v + 1e-5) * p['BatchNorm_0']['scale'] + p[
        'BatchNorm_0']['bias']
  z = dense(np.maximum(h, 0), p['Dense_1'])
  logz = np.log(np.exp(z - z.max(1, keepdims=True)).sum(1)) + z.max(1)
  return np.mean(logz - z[np.arange(len(y)), y]), np.mean(z.argmax(1) != y)


@pytest.mark.parametrize('momentum', [0.99, 0.5, None])
def test_user_model_recalibration_is_exact_for_any_momentum(momentum):
  """λ = 0 with recalibration equals an exact numpy recalibration (the
  statistics were wrong for any momentum but 0.9)."""
  rng = np.random.default_rng(0)
  x = rng.normal(size=(60, 4)).astype(np.float32) * 3 + 1
  y = rng.integers(0, 3, 60).astype(np.int32)
  model = _UserNet(momentum)
  v = model.init(jax.random.key(0), x[:1])
  stats = v.get('batch_stats', {})
  d = directions.sample('gaussian', jax.random.key(1), v['params'])
  rx = sweep.make_recal_batches(x[:40], 40, 20)
  ev = sweep.make_batches(x[40:], y[40:], 8)
  out = sweep.make_sweep(model, recal=True)(v['params'], stats, [d],
                                            np.zeros((1, 1)), ev, rx)
  loss, err = _numpy_recal_eval(v['params'], x[:40], x[40:], y[40:],
                                momentum is not None)
  assert float(out['loss'][0]) == pytest.approx(loss, abs=1e-4)
  assert float(out['error'][0]) == pytest.approx(err, abs=1e-6)
  ref = sweep.sweep_reference(model, v['params'], stats, [d],
                              np.zeros((1, 1)), x[40:], y[40:], 8, x[:40], 20)
  assert ref['loss'][0] == pytest.approx(loss, abs=1e-4)


class _TwiceBN(flax.linen.Module):

  @flax.linen.compact
  def __call__(self, x, train: bool = False):
    bn = flax.linen.BatchNorm(use_running_average=not train)
    return flax.linen.Dense(2)(bn(bn(x)))


class _FrozenBN(flax.linen.Module):

  @flax.linen.compact
  def __call__(self, x, train: bool = False):
    x = flax.linen.BatchNorm(use_running_average=True)(x)
    return flax.linen.Dense(2)(x)


class _NoTrain(flax.linen.Module):

  @flax.linen.compact
  def __call__(self, x):
    return flax.linen.Dense(2)(x)


@pytest.mark.parametrize('net, match', [
    (_TwiceBN(), 'called 2 times'),
    (_FrozenBN(), 'use_running_average=not train'),
    (_NoTrain(), 'must take a `train` argument')])
def test_models_the_sweep_cannot_handle_are_refused(net, match):
  x = np.ones((4, 3), np.float32)
  v = (net.init(jax.random.key(0), x) if isinstance(net, _NoTrain) else
       net.init(jax.random.key(0), x, train=False))
  y = np.zeros(4, np.int32)
  with pytest.raises(sweep.InputError, match=match):
    sweep.make_sweep(net, recal=True)(
        v['params'], v.get('batch_stats', {}), [v['params']],
        np.zeros((1, 1)), sweep.make_batches(x, y, 2),
        sweep.make_recal_batches(x, 4, 2))


def test_misused_directions_are_refused_with_the_fix():
  model = _UserNet(None)
  x = np.ones((4, 4), np.float32)
  v = model.init(jax.random.key(0), x)
  p = v['params']
  ev = sweep.make_batches(x, np.zeros(4, np.int32), 2)
  run = sweep.make_sweep(model)
  with pytest.raises(sweep.InputError, match=r'pass \[d\]'):
    run(p, {}, p, np.zeros((1, 1)), ev)
  short = {'Dense_0': p['Dense_0']}
  with pytest.raises(sweep.InputError, match="lacks.*Dense_1"):
    run(p, {}, [short], np.zeros((1, 1)), ev)
  wide = jax.tree.map(lambda a: np.zeros((*a.shape, 2)), p)
  with pytest.raises(sweep.InputError, match='has shape'):
    run(p, {}, [wide], np.zeros((1, 1)), ev)
