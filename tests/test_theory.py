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
    assert m['loss_unclipped'] == pytest.approx(
        float(jax.jit(_mean_ce)(w, x, y)), rel=1e-12)
  # Spread and error by plain numpy (float64 softmax), not theory's helpers.
  z = x @ w.T
  q = np.exp(z - z.max(1, keepdims=True))
  q /= q.sum(1, keepdims=True)
  assert m['spread'] == pytest.approx(np.mean(1.0 - np.sum(q ** 2, 1)),
                                      rel=1e-12)
  assert m['error'] == np.mean(z.argmax(1) != y)
  assert m['trace'] == pytest.approx(np.trace(h), rel=1e-12)  # Autodiff H.


# ---------------------------------------- Listing 2 (Fig. 29), numpy reference


def _np_softmax(w, x):
  z = x @ w.T
  e = np.exp(z - z.max(1, keepdims=True))
  return e / e.sum(1, keepdims=True)


def _np_grad_hessian(w, x, y):
  """∇L and ∇²L of the mean (unclipped) CE of softmax(x wᵀ), in closed form:
  G = mean_i (p_i − e_{y_i}) x_iᵀ and H = mean_i (diag p_i − p_i p_iᵀ) ⊗
  x_i x_iᵀ, for vec(W) row-major (index c·D + d)."""
  p = _np_softmax(w, x)
  onehot = np.eye(w.shape[0])[y]
  g = (p - onehot).T @ x / len(y)
  h = sum(np.kron(np.diag(pi) - np.outer(pi, pi), np.outer(xi, xi))
          for pi, xi in zip(p, x)) / len(y)
  return g, h


def _np_ce(w, x, y):
  z = x @ w.T
  zmax = z.max(1)
  lse = zmax + np.log(np.exp(z - zmax[:, None]).sum(1))
  return float(np.mean(lse - z[np.arange(len(y)), y]))


def _far_softmax(seed=0, n=40, c=3, d=4):
  """Weights large enough that log_loss clips part of the samples."""
  rng = np.random.default_rng(seed)
  return (rng.normal(size=(c, d)) * 6.0, rng.normal(size=(n, d)) * 2.0,
          rng.integers(0, c, n), rng.normal(size=(c, d)))


def test_loss_is_clipped_as_sklearn_log_loss():
  from sklearn import metrics  # pylint: disable=g-import-not-at-top
  w, x, y, eps_dir = _far_softmax()
  for lam in (-1.0, 0.0, 1.0):
    wn = w + lam * eps_dir
    p = _np_softmax(wn, x)
    want = metrics.log_loss(y, p, labels=np.arange(3))
    m = theory.listing2_point(w, eps_dir, lam, x, y)
    assert m['loss'] == pytest.approx(want, rel=1e-4)
    assert theory.log_loss(p, y) == pytest.approx(want, rel=1e-4)
    exact = _np_ce(wn, x, y)
    assert m['loss_unclipped'] == pytest.approx(exact, rel=1e-4)
    p_y = p[np.arange(len(y)), y]
    clipped = np.mean(p_y < np.finfo(np.float64).eps)
    assert m['clipped'] == clipped
    assert 0.1 < clipped < 0.9 and exact > want + 1.0  # The clip matters.
  # 1e-15 (scikit-learn <= 1.2) caps a sample at 34.5 instead of 36.0.
  assert theory.log_loss(p, y, 1e-15) < want - 0.1


def test_error_spread_and_hessian_trace():
  w, x, y, eps_dir = _far_softmax(1)
  for lam in (-0.5, 0.0, 0.5):
    wn = w + lam * eps_dir
    p = _np_softmax(wn, x)
    _, h = _np_grad_hessian(wn, x, y)
    m = theory.listing2_point(w, eps_dir, lam, x, y)
    assert m['error'] == np.mean(p.argmax(1) != y)
    assert m['spread'] == pytest.approx(np.mean(1.0 - np.sum(p ** 2, 1)),
                                        rel=1e-4)
    assert m['trace'] == pytest.approx(np.trace(h), rel=1e-4)
  assert 0.0 < m['error'] < 1.0


def test_taylor_terms_as_the_listing_computes_them():
  """⟨∇L(Wn), Wn⟩ and vec(Wn)ᵀ H(Wn) vec(Wn), Wn = W + λε."""
  w, x, y, eps_dir = _far_softmax(2)
  w = w / 6.0  # Moderate logits: both terms are far from zero.
  for lam in (-0.7, 0.0, 0.7):
    wn = w + lam * eps_dir
    g, h = _np_grad_hessian(wn, x, y)
    m = theory.listing2_point(w, eps_dir, lam, x, y)
    assert m['first_listing'] == pytest.approx(np.sum(g * wn), rel=1e-4)
    assert m['second_listing'] == pytest.approx(wn.ravel() @ h @ wn.ravel(),
                                                rel=1e-4)


def test_taylor_terms_as_the_text_defines_them():
  """εᵀg_λ and εᵀH_λε at Wn: the slope and curvature of λ -> L(W + λε)."""
  w, x, y, eps_dir = _far_softmax(3)
  w = w / 6.0
  for lam in (-0.7, 0.0, 0.7):
    wn = w + lam * eps_dir
    g, h = _np_grad_hessian(wn, x, y)
    m = theory.listing2_point(w, eps_dir, lam, x, y)
    first, second = np.sum(g * eps_dir), eps_dir.ravel() @ h @ eps_dir.ravel()
    assert m['first_text'] == pytest.approx(first, rel=1e-4)
    assert m['second_text'] == pytest.approx(second, rel=1e-4)
    # Finite differences of the exact CE along ε, independently of G and H.
    d = 1e-3
    ce = [_np_ce(w + (lam + k * d) * eps_dir, x, y) for k in (-1, 0, 1)]
    assert m['first_text'] == pytest.approx((ce[2] - ce[0]) / (2 * d),
                                            rel=1e-4)
    assert m['second_text'] == pytest.approx(
        (ce[2] - 2 * ce[1] + ce[0]) / d ** 2, rel=1e-3)
    assert abs(m['first_text'] - m['first_listing']) > 0.1  # Not the same.


def test_listing_draw_gives_the_listings_numbers():
  """Listing 2 prints CE 7.1 / 28.7 at λ = ±0.5 along |n|·s(W) for
  np.random.seed(0): log_loss's clip at the float64 eps gives them back (the
  exact CE is 8.0 / 48.2; 67% of the samples are clipped at λ = −0.5)."""
  x, y = theory.digits()
  w = theory.fit_softmax(x, y, 500)
  np.random.seed(0)
  n = np.random.randn(*w.shape)
  np.testing.assert_array_equal(theory.listing_noise(w.shape, 0), n)
  sc = np.abs(n) * theory.listing_sign(w)
  plus = theory.listing2_point(w, sc, 0.5, x, y)
  minus = theory.listing2_point(w, sc, -0.5, x, y)
  assert plus['loss'] == pytest.approx(7.1, abs=0.05)
  assert minus['loss'] == pytest.approx(28.7, abs=0.05)
  assert plus['loss_unclipped'] == pytest.approx(8.0, abs=0.1)
  assert minus['loss_unclipped'] == pytest.approx(48.2, abs=0.3)
  assert minus['clipped'] == pytest.approx(0.67, abs=0.01)


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
