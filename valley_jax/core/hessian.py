"""Curvature of the dataset loss: Hessian-vector products, Hutchinson's
trace, the curvature dᵀHd/‖d‖² along a direction and the top eigenvalue.

The loss is the one the sweep engine evaluates: the mean cross-entropy over
every example of a `sweep.Batches` (padding has weight 0), the model in
eval mode with the batch statistics it is given. For a BN model H is thus the
Hessian with those statistics held fixed: recalibrate at the point first (as
the sweep does), then differentiate. The data are summed batch by batch in a
`lax.scan`, so one batch of activations is in memory at a time, and sharded
data (sweep.make_batches with a mesh) are split over the devices by XLA.

* `hvp`: forward-over-reverse, jax.jvp of jax.grad (Pearlmutter, "Fast exact
  multiplication by the Hessian", 1994).
* `quadratic_form`: vᵀHv as the second derivative of t ↦ L(θ + t·v),
  forward-over-forward. It needs no backward pass, so no stored activations,
  and is much cheaper: on 2 CPU cores vᵀHv of the digits CNN on 1,000
  examples took about 0.1 s this way and 1.5-4.5 s as vᵀ(Hv) (batches of
  25-500; XLA's CPU convolution gradients are slow). `directional` and
  `hutchinson` use it.
* `hutchinson`: tr(H) = E[vᵀHv] for Rademacher v (Hutchinson, 1989); the
  probes are an array axis, vmapped in chunks of `chunk` with lax.map.
* `quadratic_form_through` (and hutchinson's `stats_fn`): the Hessian of
  θ ↦ L(θ, stats(θ)) with the BN statistics recomputed from θ and
  differentiated, the curvature of the curve a recalibrating sweep draws.
* `power_iteration`: the eigenvalue of largest magnitude; `lanczos`: Ritz
  values of a Krylov space with full reorthogonalisation (both on HVPs);
  `slq` and `density`: the eigenvalue density by stochastic Lanczos
  quadrature. The Lanczos tridiagonalisation is matfree's (PyPI `matfree`,
  JAX-native); Hutchinson's trace stays ours: matfree's estimators take
  matrix-vector products, vᵀ(Hv), where `quadratic_form` needs no backward
  pass (measured in bench/hessian_bench.py).

Every function takes `loss_fn(params, batch_stats, x, y, w)`, the summed
weighted loss of one batch (`batch_loss` builds it for a model). For repeated
calls, `make_curvature` jits them once per model: parameters, directions and
keys are arguments, so new points, directions or keys reuse the executable.

>>> import jax, jax.numpy as jnp, numpy as np
>>> from valley_jax import landscape
>>> f = lambda p, s, x, y, w: jnp.sum(w * (x[:, 0] * p['a']) ** 2)
>>> data = sweep.make_batches(np.ones((3, 1), np.float32),
...                               np.zeros(3, np.int32), 2)
>>> p = {'a': jnp.array(5.0)}
>>> float(hvp(f, p, {}, {'a': jnp.array(1.0)}, data)['a'])  # d²(a²)/da².
2.0
>>> float(hutchinson(f, p, {}, jax.random.key(0), data, 4)[0])
2.0
"""

import functools
import math
from typing import Any, Callable, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax import flatten_util
from matfree import decomp as matfree_decomp

from valley_jax import sharding
from valley_jax.core import sweep
from valley_jax.core.steps import make_eval_step
from valley_jax.core.sweep import Batches

PyTree = Any
# (params, batch_stats, x_B, y_B, w_B) -> summed weighted loss of one batch.
LossFn = Callable[..., jax.Array]


def batch_loss(model: nn.Module, mean=(0.0,), std=(1.0,)) -> LossFn:
  """The sweep's loss of one batch as a function of the parameters.

  Args:
    model: a flax module called as model.apply(vars, x, train=False).
    mean, std: input normalisation of uint8 images (ignored for floats).

  Returns:
    loss_fn(params, batch_stats, x, y, w): Σ w·CE in eval mode.

  >>> import valley_jax.models as models, jax, numpy as np
  >>> m = models.build_model('mlp', 3, hidden=(4,), bn=False)
  >>> v = jax.jit(m.init)(jax.random.key(0), np.zeros((1, 2)))
  >>> f = jax.jit(batch_loss(m))
  >>> f(v['params'], {}, np.ones((2, 2)), np.zeros(2, np.int32),
  ...   np.ones(2)).shape
  ()
  """
  step = make_eval_step(model, mean, std)
  return lambda params, batch_stats, x, y, w: step(params, batch_stats, x,
                                                   y, w)['loss']


def _count(data: Batches) -> jax.Array:
  return jnp.sum(data.w)


def _data_sum(fn: Callable[..., PyTree], init: PyTree,
              data: Batches) -> PyTree:
  """Σ over the batches of fn(x_B, y_B, w_B), starting from `init`."""

  def body(acc, batch):
    return jax.tree.map(jnp.add, acc, fn(*batch)), None

  total, _ = jax.lax.scan(body, init, (data.x, data.y, data.w))
  return total


def loss(loss_fn: LossFn, params: PyTree, batch_stats: PyTree,
         data: Batches) -> jax.Array:
  """The mean loss over the data (the function H is the Hessian of).

  Args:
    loss_fn: summed loss of one batch (see batch_loss).
    params, batch_stats: the point and its BN statistics.
    data: the batches.

  Returns:
    The mean loss, a scalar.

  >>> import jax.numpy as jnp, numpy as np
  >>> from valley_jax import landscape
  >>> f = lambda p, s, x, y, w: jnp.sum(w * x[:, 0] * p)
  >>> d = sweep.make_batches(np.arange(3.0)[:, None], np.zeros(3), 2)
  >>> float(loss(f, jnp.float32(3.0), {}, d))
  3.0
  """
  zero = jnp.zeros((), jnp.result_type(*jax.tree.leaves(params)))
  total = _data_sum(lambda x, y, w: loss_fn(params, batch_stats, x, y, w),
                    zero, data)
  return total / _count(data)


def hvp(loss_fn: LossFn, params: PyTree, batch_stats: PyTree, v: PyTree,
        data: Batches) -> PyTree:
  """H·v, H the Hessian of the mean loss at `params` (forward-over-reverse).

  Args:
    loss_fn: summed loss of one batch (see batch_loss).
    params, batch_stats: the point and its (fixed) BN statistics.
    v: a tree like params.
    data: the batches.

  Returns:
    H·v, a tree like params.

  >>> import jax.numpy as jnp, numpy as np
  >>> from valley_jax import landscape
  >>> f = lambda p, s, x, y, w: jnp.sum(w * p['a'] ** 3)
  >>> d = sweep.make_batches(np.zeros((2, 1)), np.zeros(2), 2)
  >>> float(hvp(f, {'a': 2.0}, {}, {'a': 1.0}, d)['a'])  # 6a.
  12.0
  """

  def batch(x, y, w):
    grad = jax.grad(lambda p: loss_fn(p, batch_stats, x, y, w))
    return jax.jvp(grad, (params,), (v,))[1]

  total = _data_sum(batch, optax.tree.zeros_like(params), data)
  count = _count(data)
  return jax.tree.map(lambda t: t / count.astype(t.dtype), total)


def quadratic_form(loss_fn: LossFn, params: PyTree, batch_stats: PyTree,
                   v: PyTree, data: Batches) -> jax.Array:
  """vᵀHv = d²/dt² L(θ + t·v) at t = 0, forward-over-forward.

  Args:
    loss_fn: summed loss of one batch (see batch_loss).
    params, batch_stats: the point and its (fixed) BN statistics.
    v: a tree like params.
    data: the batches.

  Returns:
    vᵀHv, a scalar.

  >>> import jax.numpy as jnp, numpy as np
  >>> from valley_jax import landscape
  >>> f = lambda p, s, x, y, w: jnp.sum(w * p['a'] ** 2 * p['b'])
  >>> d = sweep.make_batches(np.zeros((2, 1)), np.zeros(2), 2)
  >>> p, v = {'a': 1.0, 'b': 3.0}, {'a': 1.0, 'b': 1.0}
  >>> float(quadratic_form(f, p, {}, v, d))  # 2b + 4a.
  10.0
  """

  def batch(x, y, w):
    def slope(p):  # dL(p + t·v)/dt at t = 0.
      return jax.jvp(lambda q: loss_fn(q, batch_stats, x, y, w), (p,),
                     (v,))[1]

    return jax.jvp(slope, (params,), (v,))[1]

  zero = jnp.zeros((), jnp.result_type(*jax.tree.leaves(params)))
  return _data_sum(batch, zero, data) / _count(data)


def directional(loss_fn: LossFn, params: PyTree, batch_stats: PyTree,
                d: PyTree, data: Batches) -> jax.Array:
  """The curvature dᵀHd/‖d‖² of the loss along the direction d.

  Args:
    loss_fn: summed loss of one batch (see batch_loss).
    params, batch_stats: the point and its (fixed) BN statistics.
    d: the direction, a non-zero tree like params.
    data: the batches.

  Returns:
    dᵀHd/‖d‖², a scalar (independent of the scale of d).

  >>> import jax.numpy as jnp, numpy as np
  >>> from valley_jax import landscape
  >>> f = lambda p, s, x, y, w: jnp.sum(w * (p[0] ** 2 + 3 * p[1] ** 2))
  >>> data = sweep.make_batches(np.zeros((2, 1)), np.zeros(2), 2)
  >>> float(directional(f, jnp.zeros(2), {}, jnp.array([0.0, 5.0]), data))
  6.0
  """
  q = quadratic_form(loss_fn, params, batch_stats, d, data)
  return q / optax.tree.norm(d, squared=True)


def quadratic_form_through(loss_fn: LossFn, stats_fn: Callable[..., PyTree],
                           params: PyTree, v: PyTree,
                           data: Batches) -> jax.Array:
  """vᵀH̃v, H̃ the Hessian of θ ↦ L(θ, stats_fn(θ)): the BN statistics are
  recomputed from θ and differentiated with it.

  With stats_fn the sweep's recalibration this is the second derivative of
  the curve a sweep with per-point recalibration draws, d²/dt² of
  L(θ + t·v, recal(θ + t·v)); `quadratic_form` holds the statistics fixed.
  Forward-over-forward through the whole data sum and the recalibration.

  Args:
    loss_fn: summed loss of one batch (see batch_loss).
    stats_fn: params -> BN statistics (e.g. sweep.recalibrate on fixed
      batches), differentiable.
    params: the point.
    v: a tree like params.
    data: the batches.

  Returns:
    vᵀH̃v, a scalar.

  >>> import jax.numpy as jnp, numpy as np
  >>> f = lambda p, s, x, y, w: jnp.sum(w * (p - s) ** 2)
  >>> d = sweep.make_batches(np.zeros((2, 1)), np.zeros(2), 2)
  >>> # L = (p − s(p))² with s = p/2: (p/2)², d²/dp² = 1/2 (fixed s: 2).
  >>> float(quadratic_form_through(f, lambda p: p / 2, 3.0, 1.0, d))
  0.5
  """

  def total(p):
    return loss(loss_fn, p, stats_fn(p), data)

  def slope(p):
    return jax.jvp(total, (p,), (v,))[1]

  return jax.jvp(slope, (params,), (v,))[1]


def rademacher(key: jax.Array, like: PyTree, num: int) -> PyTree:
  """`num` Rademacher (±1) trees like `like`, stacked on a leading axis.

  Args:
    key: a typed PRNG key.
    like: the tree whose shapes and dtypes the probes take.
    num: the number of probes.

  Returns:
    A tree like `like` whose leaves have a leading axis of size num.

  >>> import jax, jax.numpy as jnp
  >>> v = rademacher(jax.random.key(0), {'w': jnp.zeros(3)}, 2)
  >>> v['w'].shape, sorted(set(abs(v['w']).ravel().tolist()))
  ((2, 3), [1.0])
  """
  flat, unravel = flatten_util.ravel_pytree(like)
  signs = jax.random.rademacher(key, (num, flat.size), jnp.int8)
  return jax.vmap(unravel)(signs.astype(flat.dtype))


def hutchinson(loss_fn: LossFn, params: PyTree, batch_stats: PyTree,
               key: jax.Array, data: Batches, num_probes: int,
               chunk: int | None = None,
               stats_fn: Callable[..., PyTree] | None = None
               ) -> tuple[jax.Array, jax.Array]:
  """Hutchinson's estimate of tr(H) with Rademacher probes.

  Every probe v gives an unbiased estimate vᵀHv (exact when H is
  diagonal); the probes are vmapped `chunk` at a time.

  Args:
    loss_fn: summed loss of one batch (see batch_loss).
    params, batch_stats: the point and its (fixed) BN statistics.
    key: a typed PRNG key (the same key gives the same probes).
    data: the batches.
    num_probes: the number of probes.
    chunk: probes vmapped together (None: sweep.auto_chunk, so
      convolutional nets take one probe at a time: on 2 CPU cores 16 probes
      of the digits CNN took 1.6 s one at a time and 3.5 s vmapped).
    stats_fn: params -> BN statistics, differentiated with the parameters
      (quadratic_form_through; batch_stats is then unused). None: the
      statistics batch_stats held fixed.

  Returns:
    (the mean of the probes' estimates, its standard error; 0 for one
    probe).

  >>> import jax, jax.numpy as jnp, numpy as np
  >>> from valley_jax import landscape
  >>> f = lambda p, s, x, y, w: jnp.sum(w * jnp.sum(p ** 2))
  >>> d = sweep.make_batches(np.zeros((2, 1)), np.zeros(2), 2)
  >>> float(hutchinson(f, jnp.ones(5), {}, jax.random.key(1), d, 3)[0])
  10.0
  """
  probes = rademacher(key, params, num_probes)
  chunk = chunk or sweep.auto_chunk(params, num_probes)
  if stats_fn is None:
    def form(v):
      return quadratic_form(loss_fn, params, batch_stats, v, data)
  else:
    def form(v):
      return quadratic_form_through(loss_fn, stats_fn, params, v, data)
  q_K = jax.lax.map(form, probes, batch_size=min(chunk, num_probes))
  if num_probes == 1:
    return q_K[0], jnp.zeros_like(q_K[0])
  return jnp.mean(q_K), jnp.std(q_K, ddof=1) / math.sqrt(num_probes)


class EigenPair(NamedTuple):
  """An eigenvalue estimate, its unit vector and ‖Hv − value·v‖."""

  value: jax.Array
  vector: PyTree
  residual: jax.Array


def _unit(v: PyTree) -> PyTree:
  n = optax.tree.norm(v)
  return optax.tree.scale(jnp.where(n > 0, 1.0 / jnp.where(n > 0, n, 1.0),
                                    0.0), v)


def power_iteration(loss_fn: LossFn, params: PyTree, batch_stats: PyTree,
                    key: jax.Array, data: Batches,
                    iters: int | jax.Array = 20) -> EigenPair:
  """The eigenvalue of H of largest magnitude, by power iteration.

  Each of the `iters` steps takes one HVP: Hv gives the Rayleigh quotient
  vᵀHv and the residual ‖Hv − (vᵀHv)·v‖ of the current unit vector v, and
  Hv/‖Hv‖ is the next v. The result is the last v with its quotient and
  residual; the quotient's error shrinks like (λ₂/λ₁)^(2·iters).

  Args:
    loss_fn: summed loss of one batch (see batch_loss).
    params, batch_stats: the point and its (fixed) BN statistics.
    key: a typed PRNG key for the Gaussian start vector.
    data: the batches.
    iters: the number of HVPs, ≥ 1 (may be traced: no retrace per value).

  Returns:
    EigenPair(vᵀHv, v, ‖Hv − (vᵀHv)·v‖).

  >>> import jax, jax.numpy as jnp, numpy as np
  >>> from valley_jax import landscape
  >>> f = lambda p, s, x, y, w: jnp.sum(w * (p[0] ** 2 + 4 * p[1] ** 2))
  >>> d = sweep.make_batches(np.zeros((2, 1)), np.zeros(2), 2)
  >>> e = power_iteration(f, jnp.zeros(2), {}, jax.random.key(0), d, 30)
  >>> round(float(e.value), 4)
  8.0
  """

  def step(_, pair):  # Until the loop ends, `residual` holds Hv.
    v = _unit(pair.residual)
    hv = hvp(loss_fn, params, batch_stats, v, data)
    return EigenPair(optax.tree.vdot(v, hv), v, hv)

  start = _unit(optax.tree.random_like(key, params, jax.random.normal))
  zero = jnp.zeros((), jnp.result_type(*jax.tree.leaves(params)))
  last = jax.lax.fori_loop(0, iters, step, EigenPair(zero, start, start))
  return EigenPair(last.value, last.vector, optax.tree.norm(
      optax.tree.add_scale(last.residual, -last.value, last.vector)))


def _tridiagonal(loss_fn: LossFn, params: PyTree, batch_stats: PyTree,
                 start: jax.Array, data: Batches, steps: int) -> jax.Array:
  """The [steps, steps] Lanczos tridiagonal matrix of H from a flat start
  vector: matfree's tridiagonalisation with full reorthogonalisation."""
  flat, unravel = flatten_util.ravel_pytree(params)

  def mv(q):
    hv = hvp(loss_fn, params, batch_stats, unravel(q), data)
    return flatten_util.ravel_pytree(hv)[0]

  tridiag = matfree_decomp.tridiag_sym(steps, reortho='full',
                                       custom_vjp=False)
  return tridiag(mv, start.astype(flat.dtype)).J_small


def lanczos(loss_fn: LossFn, params: PyTree, batch_stats: PyTree,
            key: jax.Array, data: Batches, steps: int) -> jax.Array:
  """Ritz values of H from `steps` Lanczos steps (Lanczos, 1950).

  matfree's `decomp.tridiag_sym` with full reorthogonalisation (Krämer et
  al., "Gradients of functions of large matrices", NeurIPS 2024, the
  matfree library) on HVPs from a Gaussian start vector. The extreme Ritz
  values converge to the extreme eigenvalues much faster than power
  iteration.

  Args:
    loss_fn: summed loss of one batch (see batch_loss).
    params, batch_stats: the point and its (fixed) BN statistics.
    key: a typed PRNG key for the Gaussian start vector.
    data: the batches.
    steps: the Krylov dimension (static), at most the number of
      parameters.

  Returns:
    The [steps] Ritz values, ascending (the last is the top estimate).

  >>> import jax, jax.numpy as jnp, numpy as np
  >>> from valley_jax import landscape
  >>> f = lambda p, s, x, y, w: jnp.sum(w * (p[0] ** 2 + 4 * p[1] ** 2))
  >>> d = sweep.make_batches(np.zeros((2, 1)), np.zeros(2), 2)
  >>> lanczos(f, jnp.zeros(2), {}, jax.random.key(0), d, 2).round(4).tolist()
  [2.0, 8.0]
  """
  flat, _ = flatten_util.ravel_pytree(params)
  start = jax.random.normal(key, flat.shape, flat.dtype)
  return jnp.linalg.eigvalsh(_tridiagonal(loss_fn, params, batch_stats,
                                          start, data, steps))


def slq(loss_fn: LossFn, params: PyTree, batch_stats: PyTree,
        key: jax.Array, data: Batches, steps: int,
        num_probes: int) -> tuple[jax.Array, jax.Array]:
  """Stochastic Lanczos quadrature of H's spectral density.

  For each of `num_probes` Rademacher start vectors v, `steps` Lanczos steps
  give a tridiagonal T = U diag(θ) Uᵀ; the nodes θ_i with weights U[0, i]²
  are a Gauss quadrature of the measure Σ_j (vᵀq_j)²/‖v‖² δ(λ − λ_j), whose
  mean over v is the eigenvalue density (each eigenvalue weighted 1/n)
  (Lin, Saad, Yang, "Approximating spectral densities of large matrices",
  SIAM Review 2016; PyHessian, Yao et al. 2020). The probes run one after
  another (lax.map).

  Args:
    loss_fn: summed loss of one batch (see batch_loss).
    params, batch_stats: the point and its (fixed) BN statistics.
    key: a typed PRNG key for the probes.
    data: the batches.
    steps: the Krylov dimension per probe (static).
    num_probes: the number of start vectors (static).

  Returns:
    (nodes [num_probes, steps] ascending, weights [num_probes, steps]; each
    probe's weights sum to 1).

  >>> import jax, jax.numpy as jnp, numpy as np
  >>> f = lambda p, s, x, y, w: jnp.sum(w * (p[0] ** 2 + 4 * p[1] ** 2))
  >>> d = sweep.make_batches(np.zeros((2, 1)), np.zeros(2), 2)
  >>> n, w = slq(f, jnp.zeros(2), {}, jax.random.key(0), d, 2, 3)
  >>> n[0].round(4).tolist(), w.sum(1).round(4).tolist()
  ([2.0, 8.0], [1.0, 1.0, 1.0])
  """
  probes = rademacher(key, params, num_probes)

  def one(v):
    t = _tridiagonal(loss_fn, params, batch_stats,
                     flatten_util.ravel_pytree(v)[0], data, steps)
    nodes, vecs = jnp.linalg.eigh(t)
    return nodes, vecs[0] ** 2

  return jax.lax.map(one, probes)


def density(nodes, weights, grid, sigma: float):
  """The SLQ density smoothed by a Gaussian of width sigma, on a grid.

  Args:
    nodes, weights: slq's outputs [K, S].
    grid: the eigenvalues to evaluate the density at [G].
    sigma: the Gaussian's standard deviation (> 0).

  Returns:
    [G] mean over probes of Σ_i w_i · N(grid; θ_i, σ²) (integrates to 1).

  >>> import numpy as np
  >>> d = density(np.array([[0.0]]), np.array([[1.0]]), np.array([0.0]), 1.0)
  >>> round(float(d[0]), 4)  # 1/√(2π).
  0.3989
  """
  nodes = np.asarray(nodes, np.float64)[..., None]
  weights = np.asarray(weights, np.float64)[..., None]
  z = (np.asarray(grid, np.float64) - nodes) / sigma
  kernel = np.exp(-0.5 * z ** 2) / (sigma * math.sqrt(2 * math.pi))
  return np.sum(weights * kernel, axis=1).mean(axis=0)


class Curvature(NamedTuple):
  """The functions of this module for one model, each jitted once.

  Each takes (params, batch_stats, <v, d or key>, data, ...) as the
  module-level function of the same name without its loss_fn: hvp,
  quadratic_form, directional, hutchinson(..., num_probes),
  power_iteration(..., iters), lanczos(..., steps), slq(..., steps,
  num_probes) and loss(params, batch_stats, data).
  """

  loss_fn: LossFn
  loss: Callable[..., jax.Array]
  hvp: Callable[..., PyTree]
  quadratic_form: Callable[..., jax.Array]
  directional: Callable[..., jax.Array]
  hutchinson: Callable[..., tuple[jax.Array, jax.Array]]
  power_iteration: Callable[..., EigenPair]
  lanczos: Callable[..., jax.Array]
  slq: Callable[..., tuple[jax.Array, jax.Array]]


def _compiled(fn: Callable[..., Any], loss_fn: LossFn, mesh, n_replicated: int,
              static: tuple[str, ...] = ()) -> Callable[..., Any]:
  """jit(fn) with loss_fn bound; its first arguments replicated on mesh."""
  jitted = jax.jit(functools.partial(fn, loss_fn), static_argnames=static)

  def call(*args, **kwargs):
    if mesh is not None:
      args = (*sharding.put_replicated(mesh, args[:n_replicated]),
              *args[n_replicated:])
    return jitted(*args, **kwargs)

  call.jitted = jitted  # For tests and for counting compilations.
  return call


def make_curvature(model: nn.Module, mean=(0.0,), std=(1.0,), *,
                   chunk: int | None = None, mesh=None,
                   loss_fn: LossFn | None = None) -> Curvature:
  """This module's functions for one model, compiled once per shape.

  Args:
    model: a flax module called as model.apply(vars, x, train=False).
    mean, std: input normalisation of uint8 images (ignored for floats).
    chunk: Hutchinson probes vmapped together (None: by architecture).
    mesh: the mesh the data are sharded over; parameters, directions and
      keys are replicated on it (None: leave them where they are).
    loss_fn: the loss of one batch (default batch_loss(model, mean, std)).

  Returns:
    A Curvature.

  >>> import valley_jax.models as models, numpy as np, jax
  >>> from valley_jax import landscape
  >>> m = models.build_model('mlp', 3, hidden=(4,), bn=False)
  >>> v = jax.jit(m.init)(jax.random.key(0), np.zeros((1, 2)))
  >>> ev = sweep.make_batches(np.ones((5, 2), np.float32),
  ...                             np.zeros(5, np.int32), 2)
  >>> c = make_curvature(m)
  >>> tr, se = c.hutchinson(v['params'], {}, jax.random.key(1), ev, 8)
  >>> tr.shape, se.shape
  ((), ())
  """
  f = loss_fn or batch_loss(model, mean, std)
  hutch = functools.partial(hutchinson, chunk=chunk)
  return Curvature(
      f, _compiled(loss, f, mesh, 2), _compiled(hvp, f, mesh, 3),
      _compiled(quadratic_form, f, mesh, 3), _compiled(directional, f, mesh, 3),
      _compiled(hutch, f, mesh, 3, ('num_probes',)),
      _compiled(power_iteration, f, mesh, 3),
      _compiled(lanczos, f, mesh, 3, ('steps',)),
      _compiled(slq, f, mesh, 3, ('steps', 'num_probes')))
