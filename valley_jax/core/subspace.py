"""Low-loss subspaces of several solutions: simplexes, connectors, ensembles.

Fort & Jastrzebski 2019 (PAPER.md Sect. 8) and Benton et al. 2021 (SPRO,
"Loss Surface Simplexes for Mode Connecting Volumes and Fast Ensembling"):
a simplex with vertices v_0..v_{n-1} is the set of Σ_i w_i v_i with
barycentric weights w ≥ 0, Σ_i w_i = 1. The sweep engine evaluates
θ = v_0 + Σ_{k≥1} c_k (v_k − v_0), so a point's coefficients are w[1:]
(`sweep_coeffs`).

The complex trained here: N fixed solutions (vertices 0..N−1) and m
trainable connectors (vertices N..N+m−1); one simplex per pair of solutions,
{v_a, v_b, c_1, ..., c_m} (`complex_simplices`), so every two solutions are
joined through the connectors and no two solutions are joined directly
except by the edge the simplex shares with the raw one. With m = 1 these are
the triangles (v_a, v_b, c); for N = 3 and c at the solutions' centroid they
tile the raw triangle (its stellar subdivision), which training then bends.
Training samples a simplex uniformly and its weights from Dirichlet(1), so
every simplex of the complex is sampled uniformly (SPRO samples a simplex in
proportion to its volume; uniform over simplices keeps all pairs of
solutions equally trained). The optional log-volume regulariser (Benton et
al.) subtracts λ · the mean log-volume of the simplices from the loss.

This module is config-free: grids, sampling, volumes, the connector train
step and the ensemble measures, on arrays and pytrees.

>>> barycentric_grid(3, 2).tolist()
[[0.0, 0.0, 1.0], [0.0, 0.5, 0.5], [0.0, 1.0, 0.0], [0.5, 0.0, 0.5], \
[0.5, 0.5, 0.0], [1.0, 0.0, 0.0]]
>>> complex_simplices(3, 1).tolist()
[[0, 1, 3], [0, 2, 3], [1, 2, 3]]
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
  """[C(N, 2), 2 + m] vertex ids: each pair of solutions with every
  connector (connectors are vertices N..N+m−1)."""
  pairs = faces(range(n_solutions), 2)
  conns = np.arange(n_solutions, n_solutions + n_connectors)
  return np.concatenate([pairs, np.tile(conns, (len(pairs), 1))], 1)


def complex_triangles(n_solutions: int, n_connectors: int) -> np.ndarray:
  """The 2-faces of the complex that hold a connector, [F, 3] (sorted).

  >>> complex_triangles(3, 2).tolist()[:4]
  [[0, 1, 3], [0, 1, 4], [0, 2, 3], [0, 2, 4]]
  """
  tris = {tuple(t) for s in complex_simplices(n_solutions, n_connectors)
          for t in itertools.combinations(s.tolist(), 3)
          if max(t) >= n_solutions}
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


def init_connectors(solutions_N: PyTree, n_connectors: int, key: jax.Array,
                    noise: float) -> PyTree:
  """Connectors at the solutions' centroid, stacked [m, ...].

  The first sits exactly at the centroid; each further one is moved by
  noise · ξ ⊙ (the solutions' elementwise std), ξ ~ N(0, 1), so that a
  simplex with two connectors is not flat (a flat one has log-volume −inf).

  Args:
    solutions_N: the solutions stacked on the leading axis.
    n_connectors: m.
    key: draws ξ (fold_in by connector).
    noise: the scale of the move of connectors 2..m.

  Returns:
    The connectors stacked on the leading axis.
  """
  mean = jax.tree.map(lambda s: s.mean(0), solutions_N)
  spread = jax.tree.map(lambda s: s.std(0), solutions_N)
  out = [mean]
  for j in range(1, n_connectors):
    leaves, treedef = jax.tree.flatten(mean)
    keys = jax.random.split(jax.random.fold_in(key, j), len(leaves))
    xi = jax.tree.unflatten(treedef, [
        jax.random.normal(k, m.shape, m.dtype) for k, m in zip(keys, leaves)])
    out.append(jax.tree.map(lambda m, s, x: m + noise * s * x, mean, spread,
                            xi))
  return stack(out)


# ------------------------------------------------------------- training


def make_connector_step(model: nn.Module, tx: optax.GradientTransformation,
                        simplices_TxD: np.ndarray, mean=(0.0,), std=(1.0,),
                        *, augment: bool = False, samples: int = 1,
                        log_volume_weight: float = 0.0
                        ) -> Callable[..., Any]:
  """A pure step (state, solutions_N, stats, x, y, key) -> (state, metrics).

  `state` is a steps.TrainState whose params are the connectors stacked
  [m, ...]; the solutions stacked [N, ...] are an argument and get no
  gradient. Each of `samples` points is drawn with `sample_weights` (key
  fold_in(key, step), then the sample index) and evaluated on the whole
  batch in train mode: BatchNorm normalises with that point's own batch
  statistics, as a train step does, and the running statistics that train
  mode computes are dropped (`stats` only gives their structure; every
  evaluated point is recalibrated afterwards). The loss is the mean CE of
  the samples minus log_volume_weight · the mean log-volume of the
  simplices.

  Args:
    model: the flax module.
    tx: the optimiser of the connectors.
    simplices_TxD: the simplices of the complex (complex_simplices).
    mean, std: input normalisation.
    augment: random crops and flips as the training runs had.
    samples: points per step, each on the whole batch.
    log_volume_weight: λ of the log-volume regulariser (0: none).

  Returns:
    The step; jit it outside. metrics: 'loss' (the samples' mean CE),
    'accuracy', 'log_volume' (mean over simplices; 0 when λ = 0).
  """
  simplices = np.asarray(simplices_TxD)
  n_vertices = int(simplices.max()) + 1

  def step(state: steps.TrainState, solutions_N, stats, x, y, key):
    x = pipeline.normalize(x, mean, std)
    if augment:
      x = pipeline.augment(jax.random.fold_in(jax.random.fold_in(key, 0),
                                              state.step), x)
    k = jax.random.fold_in(jax.random.fold_in(key, 1), state.step)

    def loss_fn(conns):
      vertices = jax.tree.map(lambda s, c: jnp.concatenate([s, c]),
                              solutions_N, conns)
      ce, correct = 0.0, 0.0
      for i in range(samples):
        w = sample_weights(jax.random.fold_in(k, i), simplices, n_vertices)
        logits, _ = steps.apply_model(model, combine(vertices, w), stats, x,
                                      True)
        ce += steps.cross_entropy(logits, y).mean() / samples
        correct += jnp.mean(logits.argmax(-1) == y) / samples
      logvol = jnp.zeros((), jnp.float32)
      if log_volume_weight:
        logvol = jnp.mean(jnp.stack([
            tree_log_volume([jax.tree.map(lambda v, i=i: v[i], vertices)
                             for i in s]) for s in simplices.tolist()]))
      return ce - log_volume_weight * logvol, (ce, correct, logvol)

    grads, (ce, acc, logvol) = jax.grad(loss_fn, has_aux=True)(state.params)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    conns = optax.apply_updates(state.params, updates)
    metrics = {'loss': ce, 'accuracy': acc, 'log_volume': logvol}
    return steps.TrainState(state.step + 1, conns, state.batch_stats,
                            opt_state), metrics

  return step


# ------------------------------------------------------------ ensembles


def ensemble_metrics(probs_MxNxC: np.ndarray,
                     labels_N: np.ndarray) -> dict[str, float]:
  """Accuracy and NLL of the ensemble (mean predicted probabilities) and of
  its members, and their mean pairwise disagreement.

  Args:
    probs_MxNxC: each member's predicted probabilities on N examples.
    labels_N: the labels.

  Returns:
    {'accuracy', 'nll', 'member_accuracy', 'member_nll' (means over the
    members), 'disagreement' (mean over pairs of the fraction of examples
    whose predicted classes differ; 0 for one member)}.

  >>> p = np.array([[[0.9, 0.1], [0.2, 0.8]], [[0.6, 0.4], [0.6, 0.4]]])
  >>> m = ensemble_metrics(p, np.array([0, 1]))
  >>> m['accuracy'], m['member_accuracy'], m['disagreement']
  (1.0, 0.75, 0.5)
  """
  p = np.asarray(probs_MxNxC, np.float64)
  y = np.asarray(labels_N)
  idx = np.arange(len(y))
  ens = p.mean(0)
  pred = p.argmax(-1)
  pairs = list(itertools.combinations(range(len(p)), 2))
  return {
      'accuracy': float(np.mean(ens.argmax(-1) == y)),
      'nll': float(-np.mean(np.log(np.maximum(ens[idx, y], 1e-12)))),
      'member_accuracy': float(np.mean(pred == y[None])),
      'member_nll': float(-np.mean(np.log(np.maximum(p[:, idx, y], 1e-12)))),
      'disagreement': float(np.mean([np.mean(pred[i] != pred[j])
                                     for i, j in pairs])) if pairs else 0.0}


def pairwise_cosines(flat_MxP: np.ndarray) -> np.ndarray:
  """[M, M] cosines between the rows (flattened parameter vectors).

  >>> pairwise_cosines(np.array([[1., 0], [1, 1]])).round(4).tolist()
  [[1.0, 0.7071], [0.7071, 1.0]]
  """
  v = np.asarray(flat_MxP, np.float64)
  v = v / np.linalg.norm(v, axis=1, keepdims=True)
  return v @ v.T


def mean_off_diagonal(m_MxM: np.ndarray) -> float:
  """The mean of a square matrix's off-diagonal entries (NaN for 1×1)."""
  m = np.asarray(m_MxM)
  if len(m) < 2:
    return math.nan
  return float(m[~np.eye(len(m), dtype=bool)].mean())
