"""Cuts through the landscape and trajectory geometry (Fort & Jastrzebski).

Config-free math behind the probe kinds `cuts` and `paths`
(valley_jax/probe/studies/wedges.py), after Fort & Jastrzebski, "Large Scale
Structure of Neural Network Loss Landscapes", NeurIPS 2019:

* `plane`: the plane through three parameter points a, b, c, with an
  orthonormal basis (e1, e2) by Gram-Schmidt on (b − a, c − a) and the plane
  coordinates of the three points; `coords` / `point` map between θ and
  (x, y). `square_grid` spans the three points with a margin.
* `orthogonal_unit`, `wedge_coeffs`, `wedge_values`, `interval`, `widths`:
  the width of the low-loss region along unit directions orthogonal to the
  ray from the origin through θf, at points t·θf of that ray. The wedge
  model predicts that it grows with the distance r = t·‖θf‖ from the
  origin.
* `top_eigenvectors`: the top k eigenpairs of a symmetric operator (the
  Hessian through Hessian-vector products) by block power iteration, for
  widths along the sharpest directions (wedge anisotropy).
* `trajectory`: ‖θt‖, ‖θt − θ0‖, cos(θt, θ0) and the cosine between
  successive updates along kept epochs of one run.

Vectors are parameter pytrees; inner products are float32 sums on the
device (optax.tree.vdot), so a plane's coordinates reproduce its points to
float32 rounding (relative 1e-6 of their distances).

>>> import jax.numpy as jnp
>>> pl = plane({'w': jnp.zeros(3)}, {'w': jnp.array([2.0, 0.0, 0.0])},
...            {'w': jnp.array([1.0, 3.0, 0.0])})
>>> pl.coords_Nx2.tolist()
[[0.0, 0.0], [2.0, 0.0], [1.0, 3.0]]
>>> interval([-2.0, -1.0, 0.0, 1.0, 2.0], [4.0, 1.0, 0.0, 1.0, 4.0], 2.5)
(-1.5, 1.5, False)
"""

import itertools
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import numpy as np
import optax

from valley_jax.errors import InputError

PyTree = Any
# A third point closer than this (relative to the chords' lengths) to the
# line through the first two makes no plane.
COLLINEAR_RTOL = 1e-3


class Plane(NamedTuple):
  """A plane a + x·e1 + y·e2 through three points.

  Attributes:
    origin: the first point a (a pytree).
    e1, e2: the orthonormal basis (pytrees like a).
    coords_Nx2: the plane coordinates of the three points (float64),
      [[0, 0], [‖b − a‖, 0], [x_c, y_c]] with y_c > 0.
  """

  origin: PyTree
  e1: PyTree
  e2: PyTree
  coords_Nx2: np.ndarray


def _dot(a: PyTree, b: PyTree) -> float:
  return float(optax.tree.vdot(a, b))


def plane(a: PyTree, b: PyTree, c: PyTree, where: str = 'the plane',
          rtol: float = COLLINEAR_RTOL) -> Plane:
  """The plane through a, b, c with an orthonormal basis (Gram-Schmidt).

  e1 = (b − a)/‖b − a‖; e2 is c − a with its e1 part removed (twice, which
  keeps it orthogonal in float32), normalised.

  Args:
    a, b, c: three points (pytrees of one structure).
    where: what names the points in an error message (a config field).
    rtol: c must lie farther than rtol·max(‖b − a‖, ‖c − a‖) from the line
      through a and b.

  Returns:
    The Plane. InputError naming `where` when b = a or the points are
    collinear.
  """
  u = optax.tree.sub(b, a)
  v = optax.tree.sub(c, a)
  nu, nv = float(optax.tree.norm(u)), float(optax.tree.norm(v))
  if not nu > 0.0 or not np.isfinite(nu):
    raise InputError(f'{where}: its first two points coincide (‖b − a‖ = '
                     f'{nu}); cut through three distinct points.')
  e1 = optax.tree.scale(1.0 / nu, u)
  w = v
  for _ in range(2):
    w = optax.tree.add_scale(w, -_dot(w, e1), e1)
  nw = float(optax.tree.norm(w))
  if not nw > rtol * max(nu, nv):
    raise InputError(
        f'{where}: its three points are collinear (the third is '
        f'{nw:.3g} from the line through the first two, which are {nu:.3g} '
        'apart); a plane needs three points that are not on one line.')
  e2 = optax.tree.scale(1.0 / nw, w)
  pl = Plane(a, e1, e2, np.zeros((3, 2)))
  return pl._replace(coords_Nx2=np.array([coords(pl, p) for p in (a, b, c)]))


def coords(pl: Plane, p: PyTree) -> tuple[float, float]:
  """The plane coordinates (x, y) of p: its projection onto the plane.

  Args:
    pl: the plane.
    p: a point.

  Returns:
    (⟨p − a, e1⟩, ⟨p − a, e2⟩).
  """
  d = optax.tree.sub(p, pl.origin)
  return _dot(d, pl.e1), _dot(d, pl.e2)


def point(pl: Plane, x: float, y: float) -> PyTree:
  """a + x·e1 + y·e2."""
  return optax.tree.add_scale(optax.tree.add_scale(pl.origin, x, pl.e1), y,
                              pl.e2)


def square_grid(coords_Nx2, num: int, margin: float
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """A num × num grid of plane coordinates around some points.

  The grid is square (equal scales on both axes, so the figure shows angles
  and distances as they are), centred on the points' bounding box, its side
  the box's longer side plus `margin` of it on each end.

  Args:
    coords_Nx2: the points' plane coordinates.
    num: grid points per axis.
    margin: the extra fraction of the longer side on each end.

  Returns:
    (xs [num], ys [num], coefficients [num², 2]): row-major, point
    i·num + j is (xs[i], ys[j]).

  >>> xs, ys, c = square_grid([[0, 0], [2, 0], [1, 1]], 3, 0.5)
  >>> xs.tolist(), ys.tolist(), c.shape
  ([-1.0, 1.0, 3.0], [-1.5, 0.5, 2.5], (9, 2))
  """
  pts = np.asarray(coords_Nx2, np.float64)
  lo, hi = pts.min(0), pts.max(0)
  half = (0.5 + margin) * max(float((hi - lo).max()), 1e-12)
  xs, ys = (np.linspace(m - half, m + half, num) for m in (lo + hi) / 2)
  a, b = np.meshgrid(xs, ys, indexing='ij')
  return xs, ys, np.stack([a.ravel(), b.ravel()], 1)


# --------------------------------------------------------------------- wedges


def orthogonal_unit(u: PyTree, axis: PyTree) -> PyTree:
  """u without its component along `axis`, scaled to norm 1.

  >>> import jax.numpy as jnp
  >>> d = orthogonal_unit({'w': jnp.array([1.0, 1.0])},
  ...                     {'w': jnp.array([2.0, 0.0])})
  >>> d['w'].tolist()
  [0.0, 1.0]
  """
  w = optax.tree.add_scale(u, -_dot(u, axis) / _dot(axis, axis), axis)
  return optax.tree.scale(1.0 / float(optax.tree.norm(w)), w)


def offsets(half: float, num: int) -> np.ndarray:
  """num points evenly in [−half, half], with 0 added when missing.

  >>> offsets(3.0, 4).tolist()
  [-3.0, -1.0, 0.0, 1.0, 3.0]
  """
  s = np.linspace(-half, half, num)
  s[np.abs(s) <= 1e-12 * half] = 0.0  # linspace's middle point, rounded.
  return np.unique(np.concatenate([s, [0.0]]))


def wedge_coeffs(ts: Sequence[float], offsets_TxS, num_dirs: int
                 ) -> np.ndarray:
  """Coefficients of the wedge points for a sweep around θf.

  The sweep's base is θf and its directions [θf, u_1, ..., u_D]: point
  (t, j, s) is θf + (t − 1)·θf + s·u_j = t·θf + s·u_j.

  Args:
    ts: the points t·θf of the ray.
    offsets_TxS: the offsets s along each direction, per t (or [S] for all).
    num_dirs: D, the number of directions u_j.

  Returns:
    [T·D·S, 1 + D], ordered t, then j, then s.

  >>> wedge_coeffs([2.0], [-1.0, 1.0], 1).tolist()
  [[1.0, -1.0], [1.0, 1.0]]
  """
  ts = np.asarray(ts, np.float64)
  s = np.broadcast_to(np.asarray(offsets_TxS, np.float64),
                      (len(ts), np.shape(offsets_TxS)[-1]))
  out = np.zeros((len(ts), num_dirs, s.shape[1], 1 + num_dirs))
  out[..., 0] = (ts - 1.0)[:, None, None]
  for j in range(num_dirs):
    out[:, j, :, 1 + j] = s
  return out.reshape(-1, 1 + num_dirs)


def interval(offsets_S, values_S, threshold: float
             ) -> tuple[float, float, bool]:
  """The interval around offset 0 where values stay below threshold.

  From the grid point at 0 outwards on each side, up to the first value at
  or above the threshold (or not finite); the end is where the straight line
  between that grid point and the one before crosses the threshold (the last
  grid point below it when the value is not finite).

  Args:
    offsets_S: sorted offsets, 0 among them.
    values_S: the loss (or error) at each offset.
    threshold: the low-loss level.

  Returns:
    (lo, hi, censored): (0, 0, False) when the value at 0 is not below the
    threshold; censored when the interval reaches an end of the grid (the
    width is then a lower bound).
  """
  s = np.asarray(offsets_S, np.float64)
  v = np.asarray(values_S, np.float64)
  i0 = int(np.argmin(np.abs(s)))
  if not v[i0] < threshold:  # NaN too.
    return 0.0, 0.0, False
  ends, censored = [], False
  for step in (-1, 1):
    i = i0
    while 0 <= i + step < len(s) and v[i + step] < threshold:
      i += step
    j = i + step
    if not 0 <= j < len(s):
      ends.append(float(s[i]))
      censored = True
    elif np.isfinite(v[j]):
      f = (threshold - v[i]) / (v[j] - v[i])
      ends.append(float(s[i] + f * (s[j] - s[i])))
    else:
      ends.append(float(s[i]))
  return ends[0], ends[1], censored


class Wedges(NamedTuple):
  """Intervals of the low-loss region at points t·θf (see widths).

  Attributes:
    width_TxD: hi − lo per point and direction (parameter units).
    lo_TxD, hi_TxD: the interval's ends.
    censored_TxD: the interval reached the end of the offsets.
  """

  width_TxD: np.ndarray
  lo_TxD: np.ndarray
  hi_TxD: np.ndarray
  censored_TxD: np.ndarray


def wedge_values(evaluate: Callable[[PyTree, list[PyTree], np.ndarray],
                                    dict[str, Any]],
                 theta_f: PyTree, dirs: Sequence[PyTree], ts: Sequence[float],
                 offsets_TxS) -> dict[str, np.ndarray]:
  """The values at t·θf + s·u_j for every t, direction and offset.

  Args:
    evaluate: (base, directions, coefficients [P, K]) -> {metric: [P]},
      the values at each base + Σ_k c_k·d_k (a sweep); called once.
    theta_f: θf, the ray's direction and the sweep's base.
    dirs: D unit directions orthogonal to θf (orthogonal_unit).
    ts: the points t·θf (r = t·‖θf‖).
    offsets_TxS: offsets along each direction, per t (or [S] for all).

  Returns:
    {metric: [T, D, S]}.
  """
  coeffs = wedge_coeffs(ts, offsets_TxS, len(dirs))
  out = evaluate(theta_f, [theta_f, *dirs], coeffs)
  shape = (len(ts), len(dirs), np.shape(offsets_TxS)[-1])
  return {k: np.asarray(v, np.float64).reshape(shape) for k, v in out.items()}


def widths(offsets_TxS, values_TxDxS, thresholds_T) -> Wedges:
  """The low-loss interval around every point t·θf along every direction.

  Args:
    offsets_TxS: sorted offsets per t (0 among them), or [S] for all.
    values_TxDxS: the values (wedge_values).
    thresholds_T: the low-loss level per t (or one for all).

  Returns:
    Wedges, indexed [t, direction].

  >>> w = widths([-2.0, 0.0, 2.0], [[[4.0, 0.0, 1.0]]], 2.0)
  >>> w.lo_TxD.tolist(), w.hi_TxD.tolist(), w.censored_TxD.tolist()
  ([[-1.0]], [[2.0]], [[True]])
  """
  v = np.asarray(values_TxDxS, np.float64)
  t, d, s = v.shape
  offs = np.broadcast_to(np.asarray(offsets_TxS, np.float64), (t, s))
  thr = np.broadcast_to(np.asarray(thresholds_T, np.float64), (t,))
  ends = np.array([[interval(offs[i], v[i, j], thr[i]) for j in range(d)]
                   for i in range(t)], np.float64).reshape(t, d, 3)
  lo, hi = ends[..., 0], ends[..., 1]
  return Wedges(hi - lo, lo, hi, ends[..., 2].astype(bool))


def top_eigenvectors(matvec: Callable[[np.ndarray], np.ndarray], n: int,
                     k: int, iters: int, seed: int = 0
                     ) -> tuple[np.ndarray, np.ndarray]:
  """The k eigenpairs of largest |value| of a symmetric operator, by block
  power iteration (orthonormalised by QR each step, then Rayleigh-Ritz).

  Args:
    matvec: v [n] -> A·v (a Hessian-vector product on a flat vector).
    n: the dimension.
    k: how many pairs.
    iters: power iterations.
    seed: the random start block.

  Returns:
    (values [k], descending by |value|; vectors [k, n], unit rows).

  >>> a = np.diag([5.0, -3.0, 1.0, 0.5])
  >>> vals, vecs = top_eigenvectors(lambda v: a @ v, 4, 2, 100)
  >>> vals.round(6).tolist(), np.abs(vecs).round(6).tolist()[0]
  ([5.0, -3.0], [1.0, 0.0, 0.0, 0.0])
  """
  if not 1 <= k <= n:
    raise InputError(f'top_eigenvectors needs 1 ≤ k ≤ n, got k={k}, n={n}.')
  rng = np.random.default_rng(seed)
  q, _ = np.linalg.qr(rng.normal(size=(n, k)))
  for _ in range(iters):
    q, _ = np.linalg.qr(np.stack([matvec(q[:, j]) for j in range(k)], 1))
  aq = np.stack([matvec(q[:, j]) for j in range(k)], 1)
  vals, rot = np.linalg.eigh(q.T @ aq)
  order = np.argsort(-np.abs(vals))
  vecs = (q @ rot[:, order]).T
  return vals[order], vecs / np.linalg.norm(vecs, axis=1, keepdims=True)


# ----------------------------------------------------------------- trajectory


def _cos(a: PyTree, b: PyTree) -> float:
  den = float(optax.tree.norm(a)) * float(optax.tree.norm(b))
  return _dot(a, b) / den if den > 0 else float('nan')


def trajectory(thetas: Sequence[PyTree]) -> dict[str, list[float]]:
  """The geometry of a path θ_{t_0}, θ_{t_1}, ... (θ_{t_0} = θ0).

  Args:
    thetas: the parameters at successive kept epochs, the first the start.

  Returns:
    Lists over the points: 'norm' ‖θt‖, 'dist' ‖θt − θ0‖, 'cos_init'
    cos(θt, θ0), 'update_cos' the cosine between the update into θ_{t_i}
    and the one out of it, cos(θ_{t_i} − θ_{t_{i−1}}, θ_{t_{i+1}} − θ_{t_i})
    (NaN at the two ends), and 'step' ‖θ_{t_i} − θ_{t_{i−1}}‖ (NaN at the
    start).

  >>> import jax.numpy as jnp
  >>> t = trajectory([{'w': jnp.array([1.0, 0.0])},
  ...                 {'w': jnp.array([1.0, 1.0])},
  ...                 {'w': jnp.array([0.0, 1.0])}])
  >>> t['dist'], t['update_cos'][1]
  ([0.0, 1.0, 1.4142135381698608], 0.0)
  """
  t0, n = thetas[0], len(thetas)
  ups = [optax.tree.sub(b, a) for a, b in itertools.pairwise(thetas)]
  nan = float('nan')
  return {
      'norm': [float(optax.tree.norm(t)) for t in thetas],
      'dist': [float(optax.tree.norm(optax.tree.sub(t, t0)))
               for t in thetas],
      'cos_init': [_cos(t, t0) for t in thetas],
      'update_cos': [nan] + [_cos(ups[i - 1], ups[i])
                             for i in range(1, n - 1)] + [nan] * (n > 1),
      'step': [nan] + [float(optax.tree.norm(u)) for u in ups],
  }


def degrees(cosines) -> list[float]:
  """Angles in degrees of cosines (clipped to [−1, 1]; NaN stays NaN).

  >>> degrees([1.0, 0.0, -1.0])
  [0.0, 90.0, 180.0]
  """
  c = np.clip(np.asarray(cosines, np.float64), -1.0, 1.0)
  return np.degrees(np.arccos(c)).tolist()

