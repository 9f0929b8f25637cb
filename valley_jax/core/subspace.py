"""Low-loss subspaces of several solutions: simplexes, connectors, ensembles.

Fort & Jastrzebski 2019 ("Large Scale Structure of Neural Network Loss
Landscapes") and Benton et al. 2021 ("Loss Surface Simplexes for Mode
Connecting Volumes and Fast Ensembling"): a simplex with vertices
v_0..v_{n-1} is the set of Σ_i w_i v_i with barycentric weights w ≥ 0,
Σ_i w_i = 1. The sweep engine evaluates θ = v_0 + Σ_{k≥1} c_k (v_k − v_0),
so a point's coefficients are w[1:] (`sweep_coeffs`).

Benton et al.'s simplicial complex: N fixed solutions (vertices 0..N−1) and
m connectors (vertices N..N+m−1) shared by every solution. Simplex i is
{v_i, c_1, ..., c_m} (`complex_simplices`): no simplex holds two solutions,
and two solutions meet only through the connectors' common face, so a path
v_a → c_j → v_b stays inside the complex. The connectors are trained one
after another (`make_vertex_step`): connector j starts at the centroid of
every vertex so far (solutions and connectors 1..j−1), those stay fixed,
and each step averages the loss of several points drawn uniformly from the
complex (a simplex uniformly, its weights from Dirichlet(1)). From the
vertex the authors first regularise on, the loss also subtracts
λ · log(V² + 1e-4), V the volume of the first simplex, with λ the given
strength divided by the log(V² + 1e-4) of a simplex of as many randomly
initialised networks (`volume_lambda`). ESPRO's simplex around one solution
is the same with N = 1.

This module is config-free: grids, sampling, volumes, the vertex train
step and the ensemble measures, on arrays and pytrees.

>>> barycentric_grid(3, 2).tolist()
[[0.0, 0.0, 1.0], [0.0, 0.5, 0.5], [0.0, 1.0, 0.0], [0.5, 0.0, 0.5], \
[0.5, 0.5, 0.0], [1.0, 0.0, 0.0]]
>>> complex_simplices(3, 2).tolist()
[[0, 3, 4], [1, 3, 4], [2, 3, 4]]
"""

import itertools
import math
from typing import Any, Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from valley_jax.core import steps
from valley_jax.data import pipeline
from valley_jax.errors import InputError

PyTree = Any


# ------------------------------------------------------------------- grids


def barycentric_grid(n: int, resolution: int) -> np.ndarray:
  """Every w with n entries in {0, 1/r, ..., 1} summing to one (r = resolution).

  Args:
    n: vertices of the simplex (3: a triangle).
    resolution: r, the grid step is 1/r (r + 1 points along each edge).

  Returns:
    [P, n] float64 weights, P = C(r + n − 1, n − 1) ((r+1)(r+2)/2 for a
    triangle); the vertices (one-hot rows) are among them.

  >>> barycentric_grid(2, 4)[:, 1].tolist()
  [1.0, 0.75, 0.5, 0.25, 0.0]
  """
  if n < 1 or resolution < 1:
    raise InputError(f'A barycentric grid needs n ≥ 1 vertices and a '
                     f'resolution ≥ 1, got n={n}, resolution={resolution}.')
  rows = []
  # Compositions of r into n parts, by stars and bars.
  for bars in itertools.combinations(range(resolution + n - 1), n - 1):
    edges = (-1, *bars, resolution + n - 1)
    rows.append([edges[i + 1] - edges[i] - 1 for i in range(n)])
  return np.asarray(rows, np.float64) / resolution


def faces(vertices: Sequence[int], size: int) -> np.ndarray:
  """All faces of `size` vertices of the simplex on `vertices`, in order.

  >>> faces(range(4), 3).tolist()
  [[0, 1, 2], [0, 1, 3], [0, 2, 3], [1, 2, 3]]
  """
  return np.asarray(list(itertools.combinations(vertices, size)),
                    np.int64).reshape(-1, size)


def on_faces(n_vertices: int, faces_FxD: np.ndarray,
             grid_GxD: np.ndarray) -> np.ndarray:
  """The grid of one face placed on every face: [F, G, n_vertices] weights.

  >>> on_faces(4, np.array([[1, 3]]), np.array([[0.25, 0.75]])).tolist()
  [[[0.0, 0.25, 0.0, 0.75]]]
  """
  out = np.zeros((len(faces_FxD), len(grid_GxD), n_vertices))
  for f, face in enumerate(faces_FxD):
    out[f][:, face] = grid_GxD
  return out


def sweep_coeffs(weights_PxV: np.ndarray) -> np.ndarray:
  """The sweep's [P, V − 1] coefficients of θ = v_0 + Σ_k c_k (v_k − v_0).

  >>> sweep_coeffs(np.array([[0.2, 0.3, 0.5]])).tolist()
  [[0.3, 0.5]]
  """
  return np.asarray(weights_PxV)[:, 1:]


def unique_rows(points_PxV: np.ndarray,
                decimals: int = 9) -> tuple[np.ndarray, np.ndarray]:
  """(the distinct rows, index of each input row among them).

  Points shared by two faces (their common edge) are evaluated once.

  >>> u, i = unique_rows(np.array([[1., 0], [0, 1], [1, 0]]))
  >>> u.tolist(), i.tolist()
  ([[0.0, 1.0], [1.0, 0.0]], [1, 0, 1])
  """
  u, inverse = np.unique(np.round(points_PxV, decimals), axis=0,
                         return_inverse=True)
  return u, inverse.reshape(-1)


# ----------------------------------------------------------------- complex


def complex_simplices(n_solutions: int, n_connectors: int) -> np.ndarray:
  """[N, 1 + m] vertex ids: simplex i is solution i with every connector
  (connectors are vertices N..N+m−1), as Benton et al.'s complex.

  >>> complex_simplices(2, 1).tolist()
  [[0, 2], [1, 2]]
  """
  conns = np.arange(n_solutions, n_solutions + n_connectors)
  return np.concatenate([np.arange(n_solutions)[:, None],
                         np.tile(conns, (n_solutions, 1))], 1).astype(np.int64)


def holds_two_solutions(simplices_TxD, n_solutions: int) -> bool:
  """Whether any simplex has two or more solutions among its vertices.

  >>> holds_two_solutions([[0, 1, 3], [2, 3, 4]], 3)
  True
  """
  return any(sum(int(v) < n_solutions for v in s) > 1
             for s in np.asarray(simplices_TxD).tolist())


def complex_triangles(n_solutions: int, n_connectors: int) -> np.ndarray:
  """Every 2-face of the complex's simplices, [F, 3] (sorted).

  >>> complex_triangles(2, 3).tolist()
  [[0, 2, 3], [0, 2, 4], [0, 3, 4], [1, 2, 3], [1, 2, 4], [1, 3, 4], \
[2, 3, 4]]
  """
  tris = {t for s in complex_simplices(n_solutions, n_connectors).tolist()
          for t in itertools.combinations(s, 3)}
  return np.asarray(sorted(tris), np.int64).reshape(-1, 3)


def sample_weights(key: jax.Array, simplices_TxD, n_vertices: int,
                   alpha: float = 1.0) -> jax.Array:
  """Barycentric weights of one point drawn uniformly from the complex.

  A simplex is chosen uniformly, then its weights from Dirichlet(alpha)
  (alpha = 1: uniform over the simplex).

  Args:
    key: a PRNG key.
    simplices_TxD: [T, D] vertex ids of the simplices.
    n_vertices: all vertices of the complex.
    alpha: the Dirichlet concentration.

  Returns:
    [n_vertices] weights, non-zero only on the chosen simplex.
  """
  simplices_TxD = jnp.asarray(simplices_TxD)
  k_simplex, k_weights = jax.random.split(key)
  t = jax.random.randint(k_simplex, (), 0, simplices_TxD.shape[0])
  w = jax.random.dirichlet(k_weights,
                           jnp.full((simplices_TxD.shape[1],), alpha))
  return jnp.zeros((n_vertices,), w.dtype).at[simplices_TxD[t]].add(w)


def sample_complex(key: jax.Array, n_solutions: int, n_connectors: int,
                   count: int, offset: int = 0) -> np.ndarray:
  """[count, n_solutions + n_connectors] float64 weights of `count` points
  drawn uniformly from the complex (`sample_weights`), point i with
  fold_in(key, offset + i).

  >>> w = sample_complex(jax.random.key(0), 3, 2, 5)
  >>> w.shape, bool(np.allclose(w.sum(1), 1.0))
  ((5, 5), True)
  >>> int((w[:, :3] > 0).sum(1).max())  # No simplex holds two solutions.
  1
  """
  simplices = complex_simplices(n_solutions, n_connectors)
  v = n_solutions + n_connectors
  return np.stack([np.asarray(sample_weights(
      jax.random.fold_in(key, offset + i), simplices, v))
                   for i in range(count)]).astype(np.float64)


def stack(trees: Sequence[PyTree]) -> PyTree:
  """Pytrees of one structure stacked on a new leading axis."""
  return jax.tree.map(lambda *a: jnp.stack(a), *trees)


def unstack(tree: PyTree) -> list[PyTree]:
  """The inverse of `stack`."""
  n = jax.tree.leaves(tree)[0].shape[0]
  return [jax.tree.map(lambda a, i=i: a[i], tree) for i in range(n)]


def combine(vertices_V: PyTree, w_V: jax.Array) -> PyTree:
  """Σ_i w_i v_i of vertices stacked on the leading axis of every leaf."""
  return jax.tree.map(
      lambda v: jnp.tensordot(w_V.astype(v.dtype), v, axes=1), vertices_V)


def log_volume(vertices_DxP: jax.Array) -> jax.Array:
  """log of the (D−1)-dimensional volume of the simplex on D points.

  vol = √det(G) / (D−1)!, G the Gram matrix of v_i − v_0 (i ≥ 1).

  Args:
    vertices_DxP: the D vertices as rows (flattened parameters).

  Returns:
    The log-volume (−inf for a degenerate simplex).

  >>> round(float(log_volume(jnp.array([[0., 0], [1, 0], [0, 1]]))), 6)
  -0.693147
  """
  e = vertices_DxP[1:] - vertices_DxP[:1]
  return log_volume_from_gram(e @ e.T)


def log_volume_from_gram(gram_KxK: jax.Array) -> jax.Array:
  """log(√det G / K!) for the Gram matrix of K edge vectors."""
  k = gram_KxK.shape[0]
  _, logdet = jnp.linalg.slogdet(gram_KxK)
  return 0.5 * logdet - math.lgamma(k + 1)


def tree_log_volume(vertices: Sequence[PyTree]) -> jax.Array:
  """log_volume of a simplex whose vertices are parameter pytrees."""
  edges = [optax.tree.sub(v, vertices[0]) for v in vertices[1:]]
  gram = jnp.stack([jnp.stack([optax.tree.vdot(a, b) for b in edges])
                    for a in edges])
  return log_volume_from_gram(gram)


def log_sq_volume(vertices: Sequence[PyTree], eps: float = 1e-4
                  ) -> jax.Array:
  """log(V² + eps) of the simplex on these parameter pytrees (Benton et
  al.'s volume term; V² = det(G) / k!², G the Gram matrix of the k edges
  from the first vertex, so a flat simplex gives log(eps) and a finite
  gradient).

  >>> tri = [jnp.array([0., 0]), jnp.array([2., 0]), jnp.array([0., 2])]
  >>> round(float(log_sq_volume(tri, 1e-12)), 6)  # log(area²), area 2.
  1.386294
  """
  edges = [optax.tree.sub(v, vertices[0]) for v in vertices[1:]]
  gram = jnp.stack([jnp.stack([optax.tree.vdot(a, b) for b in edges])
                    for a in edges])
  k = len(edges)
  v2 = jnp.maximum(jnp.linalg.det(gram), 0.0) / math.factorial(k) ** 2
  return jnp.log(v2 + eps)


def volume_lambda(strength: float, log_sq_volume_init: float) -> float:
  """λ of the volume term: strength / log(V₀² + 1e-4), V₀ the volume of a
  simplex of randomly initialised networks, at least 1e-8 (0 for strength
  0), as the authors normalise it.

  >>> volume_lambda(0.1, 20.0), volume_lambda(0.1, -3.0), volume_lambda(0, 5)
  (0.005, 1e-08, 0.0)
  """
  if not strength:
    return 0.0
  return max(float(strength) / float(log_sq_volume_init), 1e-8)


def centroid(vertices_V: PyTree) -> PyTree:
  """The mean of vertices stacked on the leading axis: where a new vertex
  starts."""
  return jax.tree.map(lambda v: v.mean(0), vertices_V)


# ------------------------------------------------------------- training


def make_vertex_step(model: nn.Module, tx: optax.GradientTransformation,
                     simplices_TxD: np.ndarray, mean=(0.0,), std=(1.0,),
                     *, augment: bool = False, samples: int = 1,
                     volume_weight: float = 0.0) -> Callable[..., Any]:
  """A pure step (state, fixed_F, stats, x, y, key) -> (state, metrics)
  that trains the last vertex of a complex, the others fixed.

  `state` is a steps.TrainState whose params are the new vertex; the fixed
  vertices stacked [F, ...] are an argument and get no gradient (the new
  one is vertex F). Each of `samples` points is drawn with
  `sample_weights` (key fold_in(key, step), then the sample index) and
  evaluated on the whole batch in train mode: BatchNorm normalises with that
  point's own batch statistics, and the running statistics train mode
  computes are dropped (`stats` only gives their structure; every evaluated
  point is recalibrated afterwards). The loss is the samples' mean CE minus
  volume_weight · log(V² + 1e-4) of the first simplex (`log_sq_volume`).
  (The authors' code sums the samples' CE, which is this loss times
  `samples` and the volume weight divided by it.)

  Args:
    model: the flax module.
    tx: the optimiser of the new vertex.
    simplices_TxD: the complex's simplices over the F + 1 vertices.
    mean, std: input normalisation.
    augment: random crops and flips as the training runs had.
    samples: points per step, each on the whole batch.
    volume_weight: λ of the volume term (0: none; see `volume_lambda`).

  Returns:
    The step; jit it outside. metrics: 'loss' (the samples' mean CE),
    'accuracy', 'log_sq_volume' (of the first simplex, 0 when λ = 0).
  """
  simplices = np.asarray(simplices_TxD)
  n_vertices = int(simplices.max()) + 1
  first = simplices[0].tolist()

  def step(state: steps.TrainState, fixed_F, stats, x, y, key):
    x = pipeline.normalize(x, mean, std)
    if augment:
      x = pipeline.augment(jax.random.fold_in(jax.random.fold_in(key, 0),
                                              state.step), x)
    k = jax.random.fold_in(jax.random.fold_in(key, 1), state.step)

    def loss_fn(new):
      vertices = jax.tree.map(lambda f, c: jnp.concatenate([f, c[None]]),
                              fixed_F, new)
      ce, correct = 0.0, 0.0
      for i in range(samples):
        w = sample_weights(jax.random.fold_in(k, i), simplices, n_vertices)
        logits, _ = steps.apply_model(model, combine(vertices, w), stats, x,
                                      True)
        ce += steps.cross_entropy(logits, y).mean() / samples
        correct += jnp.mean(logits.argmax(-1) == y) / samples
      logvol = jnp.zeros((), jnp.float32)
      if volume_weight:
        logvol = log_sq_volume([jax.tree.map(lambda v, i=i: v[i], vertices)
                                for i in first])
      return ce - volume_weight * logvol, (ce, correct, logvol)

    grads, (ce, acc, logvol) = jax.grad(loss_fn, has_aux=True)(state.params)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    new = optax.apply_updates(state.params, updates)
    metrics = {'loss': ce, 'accuracy': acc, 'log_sq_volume': logvol}
    return steps.TrainState(state.step + 1, new, state.batch_stats,
                            opt_state), metrics

  return step
