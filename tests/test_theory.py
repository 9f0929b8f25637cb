"""core/theory.py: the theory demos' pure functions, hand-derivable checks."""

import doctest
import functools

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from conftest import flat, small_probe_config as _config

from valley_jax import checkpoint, models
from valley_jax.core import sweep, theory
from valley_jax.data import pipeline
from valley_jax.probe import prober


def test_docstring_examples():
  result = doctest.testmod(theory, optionflags=doctest.ELLIPSIS)
  assert result.attempted > 0 and result.failed == 0


# ------------------------------------------------- softmax regression algebra


def _tiny_softmax(seed=0, n=5, c=3, d=4):
  rng = np.random.default_rng(seed)
  return (rng.normal(size=(c, d)), rng.normal(size=(n, d)) * 2.0,
          rng.integers(0, c, n))


def _mean_ce(w, x, y):
  logp = jax.nn.log_softmax(x @ w.T)
  return -jnp.mean(logp[jnp.arange(len(y)), y])


def test_hessian_and_taylor_terms_match_autodiff():
  w, x, y = _tiny_softmax()
  v = np.random.default_rng(1).normal(size=w.shape)
  c, d = w.shape
  with jax.enable_x64(True):
    h = np.asarray(jax.jit(jax.hessian(_mean_ce))(w, x, y)).reshape(
        c * d, c * d)
    grad = np.asarray(jax.jit(jax.grad(_mean_ce))(w, x, y))
  # H = mean_i (diag p − ppᵀ) ⊗ xxᵀ, with vec(W) row-major.
  p = theory.softmax_probs(w, x)
  kron = np.mean([np.kron(np.diag(pi) - np.outer(pi, pi), np.outer(xi, xi))
                  for pi, xi in zip(p, x)], axis=0)
  np.testing.assert_allclose(kron, h, atol=1e-12)
  assert theory.hessian_trace(w, x) == pytest.approx(np.trace(h), rel=1e-12)
  first, second = theory.taylor_terms(w, v, x, y)
  assert first == pytest.approx(np.sum(grad * v), rel=1e-10)
  assert second == pytest.approx(v.ravel() @ h @ v.ravel(), rel=1e-10)
  m = theory.softmax_metrics(w, x, y)
  with jax.enable_x64(True):
    assert m['loss'] == pytest.approx(float(jax.jit(_mean_ce)(w, x, y)),
                                      rel=1e-12)
  # Spread and error by plain numpy (float64 softmax), not theory's helpers.
  z = x @ w.T
  q = np.exp(z - z.max(1, keepdims=True))
  q /= q.sum(1, keepdims=True)
  assert m['spread'] == pytest.approx(np.mean(1.0 - np.sum(q ** 2, 1)),
                                      rel=1e-12)
  assert m['error'] == np.mean(z.argmax(1) != y)
  assert m['trace'] == pytest.approx(np.trace(h), rel=1e-12)  # Autodiff H.


def test_listing1_mean_is_the_closed_form_and_grows():
  lams = np.linspace(-1.0, 1.0, 5)
  values, h = theory.listing1(jax.random.key(3), lams, 512, 0.1, 4000)
  assert values.shape == (5, 4000)
  means, se = values.mean(1), values.std(1) / np.sqrt(4000)
  expected = [theory.listing1_mean(h, 0.1, lam) for lam in lams]
  assert np.all(np.abs(means - expected) < 5 * se)
  assert np.all(np.diff(means) > 10.0)  # ≈ 0.1·512·0.8·0.5 ≈ 20 per step.
  # For small a the shift is ≈ a·||h||²·√(2/π) per unit λ.
  slope = (expected[-1] - expected[0]) / 2
  assert slope == pytest.approx(0.1 * h @ h * np.sqrt(2 / np.pi), rel=0.02)
  counts, edges = theory.histograms(values, 50)
  assert counts.shape == (5, 50) and len(edges) == 51
  assert np.all(counts.sum(1) == 4000)


# ------------------------------------------------------------- ReLU activity


def test_confusion_matches_a_numpy_count():
  rng = np.random.default_rng(0)
  a, b = rng.normal(size=(7, 3, 5)), rng.normal(size=(7, 3, 5))
  got = np.asarray(theory.confusion(jnp.asarray(a), jnp.asarray(b)))
  on_a, on_b = a > 0, b > 0
  want = [[np.sum(on_a & on_b), np.sum(on_a & ~on_b)],
          [np.sum(~on_a & on_b), np.sum(~on_a & ~on_b)]]
  assert got.tolist() == want


@pytest.mark.parametrize('name,shape,kw,layers', [
    ('cnn', (8, 8, 1), {}, ['bn1_1', 'bn1_2', 'bn2_1', 'bn2_2', 'dense1',
                            'dense2']),
    ('mlp', (8, 8, 1), {'bn': True}, ['bn1', 'bn2']),
    ('mlp', (8, 8, 1), {'bn': False}, ['dense1', 'dense2']),
    ('resnet20', (8, 8, 3), {}, None),
    ('resnet50', (32, 32, 3), {}, 'bottleneck'),
])
def test_relu_layers_of_each_architecture(name, shape, kw, layers):
  m = models.build_model(name, 10, width=0.25, **kw)
  x = jax.ShapeDtypeStruct((2, *shape), jnp.float32)
  v = jax.eval_shape(m.init, jax.random.key(0), x)
  names = theory.relu_layers(m, v, x)
  acts = jax.eval_shape(functools.partial(theory.relu_inputs, m), v, x)
  assert set(acts) == set(names)
  if layers is None:  # ResNet20: stem, then bn1 and the output of 9 blocks.
    assert len(names) == 19 and names[:3] == ['bn_stem', 'layer1_0/bn1',
                                              'layer1_0']
  elif layers == 'bottleneck':  # Stem, then bn1, bn2, output of 16 blocks.
    assert len(names) == 1 + 3 * 16 and names[:4] == [
        'bn_stem', 'layer1_0/bn1', 'layer1_0/bn2', 'layer1_0']
  else:
    assert names == layers


def test_relu_inputs_are_the_preactivations():
  """MLP without BN: dense1's capture is x W + b, and outputs are unchanged."""
  m = models.build_model('mlp', 3, hidden=(4,), bn=False)
  v = jax.jit(m.init)(jax.random.key(0), jnp.zeros((1, 2)))
  x = np.random.default_rng(0).normal(size=(6, 2)).astype(np.float32)
  acts = jax.jit(functools.partial(theory.relu_inputs, m))(v, x)
  k, b = v['params']['dense1']['kernel'], v['params']['dense1']['bias']
  np.testing.assert_allclose(acts['dense1'], x @ k + b, rtol=1e-6)
  # Negated parameters negate the pre-activations: every unit flips.
  fn = theory.make_confusion(m)
  counts = np.asarray(fn(v, jax.tree.map(lambda t: -t, v), x)['dense1'])
  pre = x @ k + b
  assert counts.tolist() == [[0, np.sum(pre > 0)], [np.sum(pre < 0), 0]]


# ----------------------------------------------------------- the gradient


@pytest.mark.slow
def test_dataset_gradient_matches_one_full_batch(trained_mlp):
  variables, cfg = checkpoint.restore_model(trained_mlp)
  ds = prober.Prober(_config(trained_mlp, 'gradient')).dataset(cfg['data'])
  model = models.from_config(ml_collections.ConfigDict(cfg['model']),
                             ds.num_classes, ds.input_shape)
  x, y = ds.x_train[:50], ds.y_train[:50]
  data = sweep.make_batches(x, y, 16)  # 4 batches, the last padded.
  g = jax.jit(functools.partial(theory.dataset_gradient, model))(
      variables['params'], variables['batch_stats'], data.x, data.y, data.w)

  def full(p):
    logits = model.apply({'params': p,
                          'batch_stats': variables['batch_stats']},
                         pipeline.normalize(jnp.asarray(x), (0.0,), (1.0,)),
                         train=False)
    return jnp.mean(jax.vmap(lambda z, t: -jax.nn.log_softmax(z)[t])(
        logits, y))

  want = jax.jit(jax.grad(full))(variables['params'])
  for a, b in zip(jax.tree.leaves(g), jax.tree.leaves(want)):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
  # cosine(∇L, θ) against float64 numpy on the full-batch gradient.
  u = flat(want).astype(np.float64)
  v = flat(variables['params']).astype(np.float64)
  assert theory.cosine(g, variables['params']) == pytest.approx(
      u @ v / np.linalg.norm(u) / np.linalg.norm(v), abs=1e-5)
