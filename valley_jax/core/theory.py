"""The theory demos of the paper (Sect. 5, Appendix D) as pure functions.

Li, Tang, Zhang, Li, Zhan, "Exploring and Exploiting the Asymmetric Valley of
Deep Neural Networks", NeurIPS 2024. Two explanations of why a valley is
flatter along noise that agrees in sign with the converged point:

* ReLU (Fig. 27, Listing 1; Fig. 28): adding |ε|·sign(w) to weights that are
  correlated with the input keeps more pre-activations positive, so fewer
  ReLU units change state than when subtracting it.
* Softmax (Fig. 10; Fig. 29, Listing 2): on a multinomial logistic
  regression, W + λ·|n|·sign(W) with λ > 0 sharpens the softmax, so
  Σ_c p_c(1 − p_c) and the trace of the CE Hessian
  H = mean_i (diag p_i − p_i p_iᵀ) ⊗ x_i x_iᵀ fall.
* Appendix D.1: sign(θf) is nearly orthogonal to the gradient at θf.

The listings compute the sign as s(w) = 2·[w > 0] − 1 (`listing_sign`, so
sign(0) = −1 here), while the probe's tree.sign maps 0 to +1; each function
says which one it uses. The softmax computations are float64 numpy, like the
listings; the logistic regression is scikit-learn's LogisticRegression
(lbfgs, multinomial, L2 with C = 1, fit_intercept=False), the listing's own
solver. Listing 2's CE is sklearn's log_loss, which clips p (`log_loss`
here does the same; softmax_metrics gives the exact CE beside it), and its
first- and second-order terms put the perturbed weights Wn where the text
puts the noise ε (`listing2_point` gives both).

>>> import numpy as np
>>> listing_sign(np.array([-2.0, 0.0, 3.0])).tolist()
[-1.0, -1.0, 1.0]
"""

from typing import Any, Callable

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from valley_jax.core import tree
from valley_jax.core.steps import cross_entropy
from valley_jax.data import pipeline
from valley_jax.models import alexnet, mlp, resnet, vgg

PyTree = Any


def listing_sign(x: np.ndarray) -> np.ndarray:
  """s(x) = 2·[x > 0] − 1, the sign of Listings 1-2 (s(0) = −1).

  Args:
    x: an array.

  Returns:
    ±1 floats of x's shape.
  """
  return 2.0 * (np.asarray(x) > 0) - 1.0


# --------------------------------------------------- softmax regression (np)


def digits() -> tuple[np.ndarray, np.ndarray]:
  """All 1,797 sklearn digits, unstandardised (pixels 0..16), as Listing 2.

  Returns:
    (x_NxD float64 with D = 64 row-major 8×8 pixels, y_N int labels).
  """
  from sklearn import datasets  # pylint: disable=g-import-not-at-top
  x, y = datasets.load_digits(return_X_y=True)
  return x.astype(np.float64), y.astype(np.int64)


def fit_softmax(x_NxD: np.ndarray, y_N: np.ndarray,
                max_iter: int = 500) -> np.ndarray:
  """Multinomial logistic regression without intercept (scikit-learn).

  LogisticRegression(fit_intercept=False, max_iter=max_iter) with its
  defaults otherwise (lbfgs, L2 with C = 1), as Listing 2. A fit that stops
  at max_iter is kept (the listing ignores the warning too). It runs on one
  thread: sklearn's OpenMP and BLAS pools beside JAX's threads took 20 s
  instead of 0.2 s on 2 cores.

  Args:
    x_NxD: inputs.
    y_N: integer labels.
    max_iter: lbfgs iterations.

  Returns:
    W_CxD, one row per class.
  """
  import warnings  # pylint: disable=g-import-not-at-top

  import threadpoolctl  # pylint: disable=g-import-not-at-top
  from sklearn import exceptions, linear_model  # pylint: disable=g-import-not-at-top
  model = linear_model.LogisticRegression(fit_intercept=False,
                                          max_iter=max_iter)
  with threadpoolctl.threadpool_limits(limits=1), warnings.catch_warnings():
    warnings.simplefilter('ignore', exceptions.ConvergenceWarning)
    model.fit(x_NxD, y_N)
  return np.asarray(model.coef_, np.float64)


def softmax_probs(W_CxD: np.ndarray, x_NxD: np.ndarray) -> np.ndarray:
  """p_NxC = softmax(x Wᵀ), computed stably in float64.

  >>> softmax_probs(np.zeros((2, 3)), np.ones((1, 3))).tolist()
  [[0.5, 0.5]]
  """
  z = x_NxD @ np.asarray(W_CxD, np.float64).T
  z = z - z.max(axis=1, keepdims=True)
  e = np.exp(z)
  return e / e.sum(axis=1, keepdims=True)


def _log_probs(W_CxD: np.ndarray, x_NxD: np.ndarray) -> np.ndarray:
  z = x_NxD @ np.asarray(W_CxD, np.float64).T
  z = z - z.max(axis=1, keepdims=True)
  return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def spread(p_NxC: np.ndarray) -> np.ndarray:
  """Σ_c p_c(1 − p_c) per sample: tr(diag p − ppᵀ), the softmax's spread."""
  return np.sum(p_NxC * (1.0 - p_NxC), axis=1)


def hessian_trace(W_CxD: np.ndarray, x_NxD: np.ndarray) -> float:
  """tr H of the mean CE of softmax(W x), H = mean_i (diag p − ppᵀ) ⊗ xxᵀ.

  tr(A ⊗ B) = tr A · tr B, so tr H = mean_i Σ_c p_c(1 − p_c)·||x_i||².

  Args:
    W_CxD: the weights.
    x_NxD: the inputs.

  Returns:
    The trace (labels do not enter the Hessian).

  >>> hessian_trace(np.zeros((2, 1)), np.array([[2.0]]))
  2.0
  """
  p = softmax_probs(W_CxD, x_NxD)
  return float(np.mean(spread(p) * np.sum(x_NxD ** 2, axis=1)))


def _taylor(p_NxC: np.ndarray, v_NxC: np.ndarray,
            y_N: np.ndarray) -> tuple[float, float]:
  """(mean_i (p_i − e_{y_i})ᵀv_i, mean_i v_iᵀ(diag p_i − p_i p_iᵀ)v_i)."""
  g = p_NxC.copy()
  g[np.arange(len(y_N)), y_N] -= 1.0
  first = np.mean(np.sum(g * v_NxC, axis=1))
  pv = np.sum(p_NxC * v_NxC, axis=1)
  second = np.mean(np.sum(p_NxC * v_NxC * v_NxC, axis=1) - pv * pv)
  return float(first), float(second)


def taylor_terms(W_CxD: np.ndarray, V_CxD: np.ndarray, x_NxD: np.ndarray,
                 y_N: np.ndarray) -> tuple[float, float]:
  """The first- and second-order terms of the mean CE at W along V.

  first = mean_i (p_i − e_{y_i})ᵀ (V x_i) = ⟨∇L(W), V⟩ and
  second = mean_i (V x_i)ᵀ (diag p_i − p_i p_iᵀ)(V x_i) = vec(V)ᵀ H vec(V),
  with p_i = softmax(W x_i) and L the unclipped mean CE (no ½ on the
  second term).

  Args:
    W_CxD: where p is computed.
    V_CxD: the matrix in the products: Listing 2 passes Wn for both, the
      paper's text takes V = ε, the noise (see listing2_point).
    x_NxD: the inputs.
    y_N: the labels.

  Returns:
    (first, second).

  >>> taylor_terms(np.zeros((2, 1)), np.array([[1.0], [0.0]]),
  ...              np.array([[2.0]]), np.array([0]))
  (-1.0, 1.0)
  """
  p = softmax_probs(W_CxD, x_NxD)
  return _taylor(p, x_NxD @ np.asarray(V_CxD, np.float64).T, y_N)


# sklearn.metrics.log_loss clips p to [eps, 1 − eps] with eps the machine
# epsilon of p's dtype (scikit-learn ≥ 1.3 with its default eps='auto', and
# the only choice since 1.5): float64 here, so −log(eps) ≈ 36.04 caps the
# CE of a sample. Scikit-learn ≤ 1.2 clipped at 1e-15 (cap 34.54) and then
# renormalised each row, which moves nothing here by more than 1e-14.
LOG_LOSS_EPS = float(np.finfo(np.float64).eps)


def log_loss(p_NxC: np.ndarray, y_N: np.ndarray,
             eps: float = LOG_LOSS_EPS) -> float:
  """Mean CE with p clipped to [eps, 1 − eps], as sklearn's log_loss.

  Listing 2 measures its CE with sklearn.metrics.log_loss, whose clip binds
  far from W: along |n|·s(W) at λ = −0.5 most samples give their own class
  p_y < eps and each of them counts as −log(eps) ≈ 36.04 instead of its
  true −log p_y (48 unclipped against 28.7 clipped on the mean). With the
  float64 eps the listing's numbers come back (CE 7.1 / 28.7 at λ = ±0.5 on
  the listing's draw); with 1e-15, older sklearn's default, they do not
  (7.0 / 27.7).

  Args:
    p_NxC: probabilities (rows sum to 1).
    y_N: integer labels.
    eps: the clip.

  Returns:
    The mean over samples of −log clip(p_{i,y_i}, eps, 1 − eps).

  >>> log_loss(np.array([[1.0, 0.0], [0.5, 0.5]]), np.array([1, 0]))
  18.36...
  """
  p_y = np.asarray(p_NxC, np.float64)[np.arange(len(y_N)), y_N]
  return float(-np.mean(np.log(np.clip(p_y, eps, 1.0 - eps))))


def softmax_metrics(W_CxD: np.ndarray, x_NxD: np.ndarray,
                    y_N: np.ndarray) -> dict[str, float]:
  """Error, mean CE (clipped and not), mean Σ_c p_c(1 − p_c), tr H.

  Args:
    W_CxD: the weights.
    x_NxD: the inputs.
    y_N: the labels.

  Returns:
    {'error', 'loss': the CE as sklearn's log_loss computes it (log_loss),
    'loss_unclipped': the exact mean CE, 'clipped': the fraction of samples
    whose p_y < LOG_LOSS_EPS (the clip binds), 'spread', 'trace'}.
  """
  return _metrics(_log_probs(W_CxD, x_NxD), x_NxD, y_N)


def _metrics(logp_NxC: np.ndarray, x_NxD: np.ndarray,
             y_N: np.ndarray) -> dict[str, float]:
  """softmax_metrics from the log-probabilities."""
  p = np.exp(logp_NxC)
  logp_y = logp_NxC[np.arange(len(y_N)), y_N]
  s_N = spread(p)
  return {'error': float(np.mean(p.argmax(1) != y_N)),
          'loss': log_loss(p, y_N),
          'loss_unclipped': float(-np.mean(logp_y)),
          'clipped': float(np.mean(logp_y < np.log(LOG_LOSS_EPS))),
          'spread': float(np.mean(s_N)),
          'trace': float(np.mean(s_N * np.sum(x_NxD ** 2, axis=1)))}


# What listing2_point measures; results.json of kind listing2 keeps them all.
LISTING2_DEFINITIONS = {
    'error': 'fraction of the digits misclassified by Wn = W + λε',
    'loss': 'mean CE as sklearn.metrics.log_loss computes it (p clipped '
            'to [eps, 1 − eps], eps = float64 machine epsilon): Listing 2',
    'loss_unclipped': 'the exact mean CE, −mean_i log p_{i,y_i}',
    'clipped': 'fraction of samples with p_y < eps (where log_loss clips)',
    'spread': 'mean_i Σ_c p_ic(1 − p_ic)',
    'trace': 'tr H(Wn) = mean_i Σ_c p_ic(1 − p_ic)·||x_i||²',
    'first_listing': '⟨∇L(Wn), Wn⟩, Listing 2\'s first-order term',
    'second_listing': 'vec(Wn)ᵀ H(Wn) vec(Wn), Listing 2\'s second-order '
                      'term (no ½)',
    'first_text': 'εᵀg_λ = ⟨∇L(Wn), ε⟩ = dL(Wn)/dλ, the text\'s first-order '
                  'term (ε: the noise)',
    'second_text': 'εᵀH_λε = vec(ε)ᵀ H(Wn) vec(ε) = d²L(Wn)/dλ², the text\'s '
                   'second-order term (no ½)',
}
LISTING2_METRICS = tuple(LISTING2_DEFINITIONS)


def listing2_point(W_CxD: np.ndarray, noise_CxD: np.ndarray, lam: float,
                   x_NxD: np.ndarray, y_N: np.ndarray) -> dict[str, float]:
  """Every metric of Listing 2 at Wn = W + λ·ε (LISTING2_DEFINITIONS).

  The Taylor terms come in two versions, both at p = softmax(Wn x) and with
  the unclipped CE L: the listing's, with the perturbed weights Wn in the
  products (taylor_terms(Wn, Wn)), and the text's εᵀg_λ and εᵀH_λε, with
  g_λ = ∇L(Wn), H_λ = ∇²L(Wn) and ε the noise itself (taylor_terms(Wn, ε)),
  which are the slope and curvature of λ -> L(W + λε).

  Args:
    W_CxD: the fitted weights.
    noise_CxD: ε: n, or |n|·s(W) for the sign-consistent noise.
    lam: λ.
    x_NxD: the inputs.
    y_N: the labels.

  Returns:
    metric -> value for every metric of LISTING2_METRICS.
  """
  eps = np.asarray(noise_CxD, np.float64)
  wn = W_CxD + lam * eps
  logp = _log_probs(wn, x_NxD)
  m, p = _metrics(logp, x_NxD, y_N), np.exp(logp)
  m['first_listing'], m['second_listing'] = _taylor(p, x_NxD @ wn.T, y_N)
  m['first_text'], m['second_text'] = _taylor(p, x_NxD @ eps.T, y_N)
  return m


def listing2_curve(W_CxD: np.ndarray, noise_CxD: np.ndarray, lams,
                   x_NxD: np.ndarray, y_N: np.ndarray) -> dict[str, list]:
  """Listing 2 along one noise: listing2_point at every λ.

  Args:
    W_CxD: the fitted weights.
    noise_CxD: n, or |n|·s(W) for the sign-consistent noise.
    lams: the λ values.
    x_NxD: the inputs.
    y_N: the labels.

  Returns:
    metric -> [one value per λ] for every metric of LISTING2_METRICS.
  """
  import threadpoolctl  # pylint: disable=g-import-not-at-top
  out = {k: [] for k in LISTING2_METRICS}
  with threadpoolctl.threadpool_limits(limits=1):  # 3x faster (fit_softmax).
    for lam in np.asarray(lams, np.float64):
      m = listing2_point(W_CxD, noise_CxD, lam, x_NxD, y_N)
      for k in LISTING2_METRICS:
        out[k].append(m[k])
  return out


def listing_noise(shape, seed: int = 0) -> np.ndarray:
  """n as NumPy's legacy generator draws it after np.random.seed(seed).

  np.random.RandomState(seed).randn(*shape), float64: with seed 0 and W's
  shape (10, 64) this is the draw whose clipped CE at λ = ±0.5 along
  |n|·s(W) is the listing's 7.1 / 28.7 (see log_loss).

  >>> listing_noise((2,), 0).round(4).tolist()
  [1.7641, 0.4002]
  """
  return np.random.RandomState(seed).randn(*shape)


def favoured(lams, values, min_abs: float = 0.5) -> float:
  """Fraction of |λ| ≥ min_abs where values(+λ) < values(−λ).

  Args:
    lams: λ values symmetric around 0.
    values: one value per λ.
    min_abs: the smallest |λ| compared.

  Returns:
    1.0 when the positive side is lower at every such λ; NaN if none.

  >>> favoured([-1.0, -0.5, 0.0, 0.5, 1.0], [9, 8, 0, 1, 2])
  1.0
  """
  lams, v = np.asarray(lams, np.float64), np.asarray(values, np.float64)
  wins = [v[i] < v[np.argmin(np.abs(lams + lam))]
          for i, lam in enumerate(lams) if lam >= min_abs]
  return float(np.mean(wins)) if wins else float('nan')


def asymmetry(lams, values, min_abs: float = 0.5) -> float:
  """Mean over λ ≥ min_abs of (v(−λ) − v(+λ)) / (|v(−λ)| + |v(+λ)|).

  In [−1, 1]: > 0 where the positive side is lower; 0 for a symmetric
  curve.

  >>> asymmetry([-1.0, 0.0, 1.0], [3.0, 0.0, 1.0])
  0.5
  """
  lams, v = np.asarray(lams, np.float64), np.asarray(values, np.float64)
  gaps = []
  for i, lam in enumerate(lams):
    if lam >= min_abs:
      neg = v[np.argmin(np.abs(lams + lam))]
      den = abs(neg) + abs(v[i])
      gaps.append((neg - v[i]) / den if den > 0 else 0.0)
  return float(np.mean(gaps)) if gaps else float('nan')


def sign_maps(W_CxD: np.ndarray, classes, lams,
              shape=(8, 8)) -> np.ndarray:
  """Fig. 10: w_c + λ·s(w_c) for each λ and class, as images.

  Args:
    W_CxD: the weights (rows are classes).
    classes: the classes to show.
    lams: the λ values.
    shape: the image shape of one row.

  Returns:
    maps_LxKxHxW.
  """
  w = np.asarray(W_CxD, np.float64)[np.asarray(classes)]
  maps = [w + lam * listing_sign(w) for lam in lams]
  return np.stack(maps).reshape(len(lams), len(w), *shape)


def pattern_correlation(maps_LxKxHxW: np.ndarray, W_CxD: np.ndarray,
                        classes) -> np.ndarray:
  """Pearson correlation of each map with its class's w_c: corr_LxK.

  >>> w = np.array([[1.0, -2.0, 3.0, -4.0]])
  >>> pattern_correlation(sign_maps(w, [0], [0.0], (2, 2)), w, [0])
  array([[1.]])
  """
  w = np.asarray(W_CxD, np.float64)[np.asarray(classes)]
  m = maps_LxKxHxW.reshape(*maps_LxKxHxW.shape[:2], -1)
  mc = m - m.mean(-1, keepdims=True)
  wc = w - w.mean(-1, keepdims=True)
  num = np.sum(mc * wc[None], -1)
  return num / (np.linalg.norm(mc, axis=-1) * np.linalg.norm(wc, axis=-1))


# ------------------------------------------------------------ Listing 1 (jax)


def listing1(key: jax.Array, lams, dim: int = 512, a: float = 0.1,
             draws: int = 10_000) -> tuple[np.ndarray, np.ndarray]:
  """Listing 1: (w + λ·s(w))ᵀh for draws of w = N(0, I) + a·h.

  h ~ N(0, I_dim) is drawn once; every draw of w gets the same h.

  Args:
    key: a typed PRNG key (split into h and the draws).
    lams: the λ values.
    dim: d.
    a: the correlation of w with h.
    draws: how many w.

  Returns:
    (values_LxN float64, h float64).
  """
  k_h, k_w = jax.random.split(key)
  h = np.asarray(jax.random.normal(k_h, (dim,)), np.float64)
  w = np.asarray(jax.random.normal(k_w, (draws, dim)), np.float64) + a * h
  base, shift = w @ h, listing_sign(w) @ h
  return np.stack([base + lam * shift for lam in lams]), h


def listing1_mean(h: np.ndarray, a: float, lam: float) -> float:
  """E[(w + λ·s(w))ᵀh | h] in closed form, w = N(0, I) + a·h.

  w_j ~ N(a·h_j, 1), so E[w_j] = a·h_j and E[s(w_j)] = 2Φ(a·h_j) − 1:
  the mean is a·||h||² + λ·Σ_j h_j (2Φ(a·h_j) − 1), which grows with λ
  (each h_j(2Φ(a·h_j) − 1) ≥ 0 for a > 0).

  >>> listing1_mean(np.array([1.0, -1.0]), 0.0, 1.0)
  0.0
  """
  from scipy import stats  # pylint: disable=g-import-not-at-top
  h = np.asarray(h, np.float64)
  return float(a * h @ h + lam * h @ (2.0 * stats.norm.cdf(a * h) - 1.0))


def histograms(values_LxN: np.ndarray,
               bins: int = 500) -> tuple[np.ndarray, np.ndarray]:
  """One histogram per row on shared bin edges (Fig. 27).

  Returns:
    (counts_LxB, edges of B + 1).
  """
  edges = np.histogram_bin_edges(values_LxN, bins=bins)
  return np.stack([np.histogram(v, edges)[0] for v in values_LxN]), edges


# --------------------------------------------------- ReLU activity (Fig. 28)


def feeds_relu(module: nn.Module, method_name: str = '__call__') -> bool:
  """Whether a module's output is the input of a ReLU in the registry models.

  A capture_intermediates filter. In this codebase's networks (read from
  valley_jax/models/) a ReLU takes:
  * a BatchNorm output (conv/dense → BN → ReLU in VGG, AlexNet, the MLP and
    the ResNet stem), except bn2 and bn_shortcut of a ResNet BasicBlock
    and bn3 and bn_shortcut of a Bottleneck, which are summed before their
    ReLU;
  * the output of a BasicBlock or Bottleneck itself, which is relu(x + y): a
    post-ReLU value, positive exactly where its pre-activation is;
  * without BN, the dense1/dense2 (and conv*) outputs of VGG/AlexNet and the
    dense* outputs of the MLP.
  FedPAN's encoding (1 + A·sin(·) > 0 for A < 1) keeps every sign. The ViT
  (GELU) has none.

  Args:
    module: the module whose method was called.
    method_name: the method (only __call__ is captured).

  Returns:
    Whether to capture it.
  """
  if method_name != '__call__':
    return False
  parent = module.parent
  if isinstance(module, (resnet.BasicBlock, resnet.Bottleneck)):
    return True
  if isinstance(parent, resnet.BasicBlock):
    return module.name == 'bn1'
  if isinstance(parent, resnet.Bottleneck):
    return module.name in ('bn1', 'bn2')
  if isinstance(module, nn.BatchNorm):
    return isinstance(parent, (resnet.ResNet, vgg.VGG, alexnet.AlexNet,
                               mlp.MLP))
  has_bn = getattr(parent, 'bn', False)
  if isinstance(module, nn.Dense) and module.name.startswith('dense'):
    return (isinstance(parent, (vgg.VGG, alexnet.AlexNet)) or
            (isinstance(parent, mlp.MLP) and not has_bn))
  if isinstance(module, nn.Conv) and module.name.startswith('conv'):
    return isinstance(parent, (vgg.VGG, alexnet.AlexNet)) and not has_bn
  return False


def relu_inputs(model: nn.Module, variables: dict[str, Any],
                x: jax.Array) -> dict[str, jax.Array]:
  """Every ReLU layer's input (see feeds_relu), in forward order.

  The model is applied in eval mode with capture_intermediates, so its
  outputs and parameters are untouched.

  Args:
    model: a registry model.
    variables: {'params', 'batch_stats'}.
    x: a normalised input batch.

  Returns:
    layer path ('layer1_0/bn1') -> its output [B, ...]; in forward order
    unless jitted (then sorted: see relu_layers).
  """
  _, state = model.apply(variables, x, train=False,
                         capture_intermediates=feeds_relu,
                         mutable=['intermediates'])
  flat = flax.traverse_util.flatten_dict(state['intermediates'])
  return {'/'.join(k[:-1]): v[0] for k, v in flat.items()
          if k[-1] == '__call__'}


def relu_layers(model: nn.Module, variables: dict[str, Any],
                x: jax.Array) -> list[str]:
  """The ReLU layers of relu_inputs in forward order (traced, not run).

  A jitted relu_inputs returns its dict with sorted keys ('layer1_0' before
  'layer1_0/bn1'); this gives the order of the forward pass.

  Args:
    model: a registry model.
    variables: {'params', 'batch_stats'} (or their shapes).
    x: an input batch (or its shape).

  Returns:
    The layer paths.
  """
  names = []

  def trace(v, x):
    names.extend(relu_inputs(model, v, x))  # Insertion order while tracing.
    return 0

  jax.eval_shape(trace, variables, x)
  return names


def confusion(before: jax.Array, after: jax.Array) -> jax.Array:
  """2×2 counts: rows active/inactive before, columns active/inactive after.

  A unit is active where its ReLU input is > 0.

  >>> confusion(jnp.array([1.0, -1.0, 2.0]), jnp.array([1.0, 1.0, -2.0]))
  Array([[1, 1],
         [1, 0]], dtype=int32)
  """
  a, b = before > 0, after > 0
  both = jnp.stack([a, ~a])[:, None] & jnp.stack([b, ~b])[None]
  return jnp.sum(both.reshape(2, 2, -1), axis=-1, dtype=jnp.int32)


def make_confusion(model: nn.Module, mean=(0.0,), std=(1.0,)) -> Callable[
    ..., dict[str, jax.Array]]:
  """A jitted fn(variables_a, variables_b, x) -> layer -> 2×2 counts.

  Args:
    model: a registry model with ReLUs.
    mean, std: the input normalisation (pipeline.normalize).

  Returns:
    The function; rows are the states under variables_a.
  """

  @jax.jit
  def fn(variables_a, variables_b, x):
    x = pipeline.normalize(x, mean, std)
    acts_a = relu_inputs(model, variables_a, x)
    acts_b = relu_inputs(model, variables_b, x)
    return {k: confusion(acts_a[k], acts_b[k]) for k in acts_a}

  return fn


# --------------------------------------------------- the gradient (App. D.1)


def dataset_gradient(model: nn.Module, params: PyTree, batch_stats: PyTree,
                     x_SxB, y_SxB, w_SxB, mean=(0.0,), std=(1.0,)) -> PyTree:
  """∇θ of the mean CE over padded batches, in eval mode (running BN stats).

  Args:
    model: a flax model.
    params: θ.
    batch_stats: the BN statistics (fixed: only params are differentiated).
    x_SxB, y_SxB, w_SxB: [steps, batch, ...] inputs, labels and 0/1 weights
      (sweep.make_batches).
    mean, std: the input normalisation.

  Returns:
    The gradient, a pytree like params.
  """

  def loss_sum(p, x, y, w):
    x = pipeline.normalize(x, mean, std)
    logits = model.apply({'params': p, 'batch_stats': batch_stats}, x,
                         train=False)
    return jnp.sum(cross_entropy(logits, y) * w)

  def body(total, batch):
    grads = jax.grad(loss_sum)(params, *batch)
    return jax.tree.map(jnp.add, total, grads), None

  zeros = jax.tree.map(jnp.zeros_like, params)
  total, _ = jax.lax.scan(body, zeros, (x_SxB, y_SxB, w_SxB))
  return jax.tree.map(lambda g: g / jnp.sum(w_SxB), total)


def cosine(a: PyTree, b: PyTree) -> float:
  """Cosine similarity of two pytrees flattened to vectors.

  >>> cosine({'w': jnp.array([1.0, 0.0])}, {'w': jnp.array([1.0, 1.0])})
  0.7071...
  """
  den = tree.norm(a) * tree.norm(b)
  return float(jnp.where(den > 0, optax.tree.vdot(a, b) / den, jnp.nan))
