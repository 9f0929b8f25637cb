"""The raw simplex of N solutions and Benton et al.'s mode-connecting
complex (Fort & Jastrzebski 2019, "Large Scale Structure of Neural Network
Loss Landscapes"; Benton et al. 2021, "Loss Surface Simplexes for Mode
Connecting Volumes and Fast Ensembling"): kind `simplex`. Kind
`ensembles` (ESPRO, deep ensembles, diversity) is in ensembles.py.

The N ≥ 3 runs of config.simplex.checkpoints (independently trained runs
of one model on one dataset, their last epochs; members.py) are the
solutions. Measured:

* the raw simplex: test loss and error on a barycentric grid of every
  2-face of the solutions' simplex (resolution r: (r+1)(r+2)/2 points per
  triangle), and its edges v_a → v_b;
* Benton et al.'s complex: m ≥ 2 connectors (config.simplex.connectors),
  simplices {v_i, c_1..c_m} (no simplex holds two solutions), the
  connectors trained one after another from the centroid of every vertex
  before them (connectors.py), `samples` points of the complex per step,
  the volume term from the second connector on (config.simplex.volume:
  the authors' λ before its normalisation by a random simplex's
  log-volume). Its grid covers every 2-face of the complex;
* every mode-to-mode path through the complex: for each pair of solutions,
  v_a → c_j → v_b for every connector and v_a → c̄ → v_b through the
  connectors' centroid (which lies on their shared face), with its barrier
  (the max test error along it minus the mean of its two ends) against the
  error at its connector plus config.simplex.path_margin;
* the whole complex's test error: the mean over config.simplex.samples_eval
  points drawn uniformly from it (a simplex uniformly, weights from
  Dirichlet(1), as the training samples), against as many points drawn
  uniformly from the raw simplex of all N solutions.

Every point is recalibrated (BN statistics on config.sweep's recalibration
batches). Intervals: the paths, the edges and the sampled points are
evaluated example by example, and each reported number has a 95 %
hierarchical bootstrap interval (core/stats.py) over the test examples (and,
for the sampled means, over the sampled points); there is one complex (one
set of runs and one connector training), so no interval covers other
training seeds. results['findings'] holds the verdicts; the curves' err+/err−
halves mean nothing here (results['err_table'] is False).

>>> np.round(path_lambdas(2), 2).tolist()
[0.0, 0.25, 0.5, 0.75, 1.0]
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import jax
import matplotlib.colors
import matplotlib.tri
import ml_collections
import numpy as np
import optax

from valley_jax import checks, plots
from valley_jax.core import stats, steps, subspace, sweep
from valley_jax.errors import InputError
from valley_jax.plots import plt
from valley_jax.probe.prober import Prober, Subject
from valley_jax.probe.studies import common, connectors, ensembles, members
from valley_jax.probe.study import Study

Config = ml_collections.ConfigDict
PyTree = Any
CONNECTORS_KIND = connectors.CONNECTORS_KIND
# Weights below this count as zero when a point's support is read.
_ZERO = 1e-9
_BOOT = 1000


# ------------------------------------------------------------------- grids


@dataclasses.dataclass
class Grid:
  """Every grid point of one simplex probe, each once.

  Attributes:
    points: [U, N + m] distinct barycentric weights (solutions, connectors).
    tri: [G, 3] the grid of one triangle.
    raw_faces: [Fr, 3] the solutions' triangles.
    raw_idx: [Fr, G] row of `points` of each raw grid point.
    trained_faces: [Ft, 3] the complex's triangles.
    trained_idx: [Ft, G] likewise.
    raw_centre, trained_centre: rows of the mean of the solutions and of
      the connectors.
    n_solutions: N.
  """

  points: np.ndarray
  tri: np.ndarray
  raw_faces: np.ndarray
  raw_idx: np.ndarray
  trained_faces: np.ndarray
  trained_idx: np.ndarray
  raw_centre: int
  trained_centre: int
  n_solutions: int

  def index(self, w) -> int:
    """The row of `points` that holds the weights w."""
    hit = np.flatnonzero(np.all(np.abs(self.points - w) < 1e-6, axis=1))
    if not hit.size:
      raise KeyError(f'{w} is not a grid point')
    return int(hit[0])

  def vertex(self, i: int) -> int:
    return self.index(np.eye(len(self.points[0]))[i])


def make_grid(n_solutions: int, n_connectors: int, resolution: int) -> Grid:
  """The raw faces, the complex's triangles and both centres, each point
  once (a point on an edge that two faces share is evaluated once).

  Args:
    n_solutions: N ≥ 1 (N < 3 has no raw face).
    n_connectors: m ≥ 0 (m < 2: no triangle of the complex).
    resolution: r ≥ 1, the grid step 1/r.

  Returns:
    The Grid.

  >>> g = make_grid(3, 2, 2)
  >>> g.points.shape, g.raw_idx.shape, g.trained_idx.shape
  ((16, 5), (1, 6), (3, 6))
  """
  v = n_solutions + n_connectors
  tri = subspace.barycentric_grid(3, resolution)
  raw_faces = subspace.faces(range(n_solutions), 3)
  trained = (subspace.complex_triangles(n_solutions, n_connectors)
             if n_connectors >= 2 else np.zeros((0, 3), np.int64))
  centres = np.zeros((2, v))
  centres[0, :n_solutions] = 1.0 / n_solutions
  if n_connectors:
    centres[1, n_solutions:] = 1.0 / n_connectors
  else:
    centres[1] = centres[0]
  everything = np.concatenate([
      subspace.on_faces(v, raw_faces, tri).reshape(-1, v),
      subspace.on_faces(v, trained, tri).reshape(-1, v), centres])
  points, inverse = subspace.unique_rows(everything)
  n_raw, n_tr = len(raw_faces) * len(tri), len(trained) * len(tri)
  return Grid(points, tri, raw_faces, inverse[:n_raw].reshape(-1, len(tri)),
              trained, inverse[n_raw:n_raw + n_tr].reshape(-1, len(tri)),
              int(inverse[-2]), int(inverse[-1]), n_solutions)


def evaluate_points(setting: sweep.Setting, vertices: list[PyTree],
                    batch_stats: PyTree, points_PxV: np.ndarray
                    ) -> dict[str, np.ndarray]:
  """Test loss and error at Σ_i w_i v_i for every row w: one sweep call.

  Args:
    setting: the compiled sweep and its data (a Subject's `sweep`).
    vertices: the V vertices (parameter pytrees).
    batch_stats: the BN statistics every point starts from (recalibrated
      per point when the setting recalibrates).
    points_PxV: barycentric weights (rows sum to one).

  Returns:
    {'loss': [P], 'error': [P]} (float64).
  """
  base = vertices[0]
  dirs = [optax.tree.sub(v, base) for v in vertices[1:]]
  return setting(base, batch_stats, dirs, subspace.sweep_coeffs(points_PxV))


def path_lambdas(resolution: int) -> np.ndarray:
  """λ ∈ [0, 1] along v_a → via → v_b: 2r + 1 points, via at ½."""
  return np.linspace(0.0, 1.0, 2 * resolution + 1)


def path_weights(n_vertices: int, a: int, b: int, via, resolution: int
                 ) -> np.ndarray:
  """[2r + 1, V] weights of the polyline v_a → via → v_b (via: weights, or
  None for the straight edge v_a → v_b).

  >>> path_weights(3, 0, 1, [0, 0, 1.], 1).tolist()
  [[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, 1.0, 0.0]]
  >>> path_weights(2, 0, 1, None, 1)[1].tolist()
  [0.5, 0.5]
  """
  eye = np.eye(n_vertices)
  if via is None:
    return np.stack([(1 - t) * eye[a] + t * eye[b]
                     for t in path_lambdas(resolution)])
  via = np.asarray(via, np.float64)
  t = np.linspace(0.0, 1.0, resolution + 1)
  first = [(1 - s) * eye[a] + s * via for s in t]
  second = [(1 - s) * via + s * eye[b] for s in t[1:]]
  return np.stack(first + second)


def routes(n: int, m: int) -> list[tuple[str, np.ndarray | None]]:
  """(name, via weights) of every route between two solutions through the
  complex: each connector, and their centroid when m ≥ 2.

  >>> [name for name, _ in routes(3, 2)]
  ['c1', 'c2', 'c̄']
  """
  eye = np.eye(n + m)
  out = [(f'c{j + 1}', eye[n + j]) for j in range(m)]
  if m >= 2:
    out.append(('c̄', eye[n:].mean(0)))
  return out


def _support(points: np.ndarray) -> np.ndarray:
  return points > _ZERO


def summarize(grid: Grid, loss: np.ndarray, error: np.ndarray
              ) -> dict[str, Any]:
  """The raw and trained grid summaries of one evaluated grid.

  Args:
    grid: the Grid.
    loss, error: [U] values at grid.points.

  Returns:
    {'vertices', 'raw', 'trained'}: per vertex values and their mean; per
    part its faces, every face's values, their mean and max, and the
    centre; the raw part's barrier (max along its edges minus the
    vertices' mean).
  """
  n = grid.n_solutions
  sup = _support(grid.points)
  solution_edge = (sup.sum(1) <= 2) & ~sup[:, n:].any(1)
  vert = [grid.vertex(i) for i in range(n)]
  out = {'vertices': {'error': error[vert].tolist(),
                      'loss': loss[vert].tolist(),
                      'mean_error': float(error[vert].mean()),
                      'mean_loss': float(loss[vert].mean())}}
  for name, idx, faces, centre in (
      ('raw', grid.raw_idx, grid.raw_faces, grid.raw_centre),
      ('trained', grid.trained_idx, grid.trained_faces,
       grid.trained_centre)):
    part = {'faces': faces.tolist()}
    on = np.zeros(len(grid.points), bool)
    on[idx.ravel()] = True
    for key, v in (('error', error), ('loss', loss)):
      vals = v[idx]
      part[key] = vals.tolist()
      part[f'mean_{key}'] = float(vals.mean()) if vals.size else None
      part[f'max_{key}'] = float(vals.max()) if vals.size else None
      part[f'centre_{key}'] = float(v[centre])
      if name == 'raw':
        ridge = v[on & solution_edge]
        part[f'barrier_{key}'] = (float(ridge.max()) -
                                  out['vertices'][f'mean_{key}']
                                  if ridge.size else None)
    out[name] = part
  return out


# --------------------------------------------------------------- intervals


def _boot(x_SxNxP: np.ndarray, stat=None, what: str = 'points', **kw
          ) -> dict[str, Any]:
  b = stats.hierarchical_bootstrap(x_SxNxP, stat, n_boot=_BOOT, **kw)
  b['method'] = b['method'].replace('seeds', what)
  return b


def path_barrier(err_NxP: np.ndarray) -> dict[str, Any]:
  """The barrier of one path (max of the mean error along it minus the
  mean of its ends) with its interval over the test examples.

  >>> e = np.zeros((4, 3)); e[:2, 1] = 1.0
  >>> path_barrier(e)['mean']
  0.5
  """
  return _boot(err_NxP[None], lambda e: _barrier(e.mean(1)), 'one path')


def _barrier(curve_SxP: np.ndarray) -> np.ndarray:
  """[S]: each curve's maximum above the mean of its two ends."""
  return curve_SxP.max(-1) - 0.5 * (curve_SxP[:, 0] + curve_SxP[:, -1])


def margins_stat(paths_idx: list[tuple[list[int], int]], margin: float):
  """stat(e [S, N, P]) -> [S]: min over paths of (the error at the path's
  connector + margin − the path's barrier); positive when every path keeps
  below its connector's error plus the margin."""
  def stat(e):
    m = e.mean(1)
    out = []
    for idx, via in paths_idx:
      out.append(m[:, via] + margin - _barrier(m[:, idx]))
    return np.min(np.stack(out), 0)
  return stat


# ------------------------------------------------------------ kind: simplex


def simplex(p: Prober, _) -> dict[str, Any]:
  """The raw simplex and Benton et al.'s complex (see the module doc).

  Args:
    p: the Prober.

  Returns:
    'curves': per pair of solutions its raw edge and every route through
    the complex; 'simplex': the grids, paths, sampled errors and
    summaries; 'findings'; 'err_table' False.
  """
  c = p.config.simplex
  t0 = time.time()
  subs = members.solutions(p)
  conns, history, folder = connectors.complex_connectors(p, subs)
  t_train = time.time() - t0
  n, m = len(subs), len(conns)
  vertices = [s.params for s in subs] + conns
  grid = make_grid(n, m, c.resolution)
  out = evaluate_points(subs[0].sweep, vertices, subs[0].batch_stats,
                        grid.points)
  labels = [s.label for s in subs]
  summary = summarize(grid, out['loss'], out['error'])
  measured = measure_paths_and_samples(p, subs, vertices, m)
  p.bar.update(1)
  simplices = subspace.complex_simplices(n, m)
  return {
      'curves': measured.pop('curves'), 'err_table': False,
      'findings': measured.pop('findings'),
      'simplex': {
          'labels': labels, 'n_solutions': n, 'n_connectors': m,
          'simplices': simplices.tolist(),
          'two_solutions_in_a_simplex': subspace.holds_two_solutions(
              simplices, n),
          'resolution': c.resolution, 'grid': grid.tri.tolist(), **summary,
          **measured,
          'seconds': {'connectors': round(t_train, 1),
                      'measure': round(time.time() - t0 - t_train, 1)},
          'connectors': {'folder': folder,
                         'fingerprint': connectors.fingerprint(conns),
                         'epochs_each': c.epochs, 'history': history}}}


def measure_paths_and_samples(p: Prober, subs: list[Subject],
                              vertices: list[PyTree], m: int
                              ) -> dict[str, Any]:
  """Example by example: every raw edge and route, and points drawn from
  the complex and from the raw simplex; their summaries and findings."""
  c = p.config.simplex
  n, v, r = len(subs), len(vertices), c.path_resolution
  pred = members.Predictor(subs[0])
  pairs = subspace.faces(range(n), 2).tolist()
  rows, paths, offset = [], [], 0
  for a, b in pairs:
    for name, via in [('raw edge', None)] + routes(n, m):
      w = path_weights(v, a, b, via, r)
      paths.append((a, b, name, via, offset, len(w)))
      rows.append(w)
      offset += len(w)
  key = jax.random.fold_in(p.root, 0x51)
  k = c.samples_eval
  on_complex = subspace.sample_complex(key, n, m, k)
  on_raw = np.zeros((k, v))
  on_raw[:, :n] = ensembles.draw_on_simplex(jax.random.fold_in(key, 1 << 20),
                                            n, k)
  conns_w = np.eye(v)[n:]
  everything = np.concatenate(rows + [on_complex, on_raw, conns_w])
  unique, inverse = subspace.unique_rows(everything)
  err_u, loss_u = pred.points(vertices, subs[0].batch_stats, unique)
  err, loss = err_u[inverse], loss_u[inverse]  # [rows, N]
  n_path_rows = offset
  curves, records, complex_paths, raw_paths = [], [], [], []
  for a, b, name, via, start, length in paths:
    idx = list(range(start, start + length))
    e, l = err[idx].T, loss[idx].T  # [N, P]
    barrier = path_barrier(e)
    raw = via is None
    via_row = None if raw else start + r  # The path's middle point.
    rec = {'pair': [a, b], 'route': name,
           'label': f'{subs[a].label} – {name} – {subs[b].label}' if not raw
           else f'{subs[a].label} – {subs[b].label}',
           'barrier': barrier,
           'via_error': None if raw else float(err[via_row].mean())}
    records.append(rec)
    (raw_paths if raw else complex_paths).append((idx, via_row))
    curves.append(common.curve(
        rec['label'], 'raw edges' if raw else 'through the complex',
        path_lambdas(r), l.mean(0), e.mean(0), pair=[a, b], route=name,
        **common.curve_meta('simplex edge' if raw else 'simplex path',
                            False, None, 'none')))
  sl = slice(n_path_rows, n_path_rows + k)
  sr = slice(n_path_rows + k, n_path_rows + 2 * k)
  sampled = {
      'complex_error': _boot(err[sl][:, :, None], what='points drawn from '
                             'the complex', bounds=(0.0, 1.0)),
      'complex_loss': _boot(loss[sl][:, :, None], what='points drawn from '
                            'the complex'),
      'raw_error': _boot(err[sr][:, :, None], what='points drawn from the '
                         'raw simplex', bounds=(0.0, 1.0)),
      'connector_error': err[n_path_rows + 2 * k:].mean(1).tolist(),
      'n_points': k, 'weights': on_complex.tolist()}
  worst = max((r_ for r_ in records if r_['route'] != 'raw edge'),
              key=lambda r_: r_['barrier']['mean'])
  findings = [
      stats.finding(
          f'every path between two solutions through the complex has a '
          f'barrier below its connector\'s error + {c.path_margin}',
          _boot(err.T[None], margins_stat(complex_paths, c.path_margin),
                'one complex'),
          statistic='min over paths of (connector error + margin − '
          'barrier), test error'),
      stats.finding(
          'the complex has a lower mean test error than the raw simplex',
          _boot((err[sr] - err[sl])[:, :, None], what='pairs of drawn '
                'points'),
          statistic='raw simplex − complex, mean test error of points '
          'drawn uniformly'),
      stats.finding(
          'the raw simplex\'s edges have a barrier',
          _boot(err.T[None], _max_barrier(raw_paths), 'one simplex'),
          statistic='max over raw edges of the barrier (test error)')]
  return {'curves': curves, 'paths': records, 'worst_path': worst['label'],
          'path_margin': c.path_margin, 'path_resolution': r,
          'sampled': sampled, 'findings': findings,
          'resolution_note': (f'one test example = '
                              f'{1.0 / len(pred.labels):.4f} of the error')}


def _max_barrier(paths_idx):
  def stat(e):
    m = e.mean(1)
    return np.max(np.stack([_barrier(m[:, idx]) for idx, _ in paths_idx]),
                  0)
  return stat


# ------------------------------------------------------------------ figures


def petals(n: int) -> list[np.ndarray]:
  """2D places of each simplex {v_i, c1, c2} drawn apart: v_i on a regular
  n-gon (the first at the top), c1 and c2 on a small circle on either side
  of its ray, so that no two drawn triangles overlap.

  >>> petals(4)[0].round(3).tolist()[0]
  [0.0, 1.0]
  """
  out = []
  half = 0.8 * np.pi / n
  for i in range(n):
    a = np.pi / 2 + 2 * np.pi * i / n
    out.append(np.array([[np.cos(a), np.sin(a)],
                         0.3 * np.array([np.cos(a - half), np.sin(a - half)]),
                         0.3 * np.array([np.cos(a + half),
                                         np.sin(a + half)])]))
  return out


def positions(n: int) -> np.ndarray:
  """The solutions on a regular n-gon, the first at the top.

  >>> positions(4).round(3).tolist()[0]
  [0.0, 1.0]
  """
  ang = np.pi / 2 + 2 * np.pi * np.arange(n) / n
  return np.stack([np.cos(ang), np.sin(ang)], 1)


def _tripcolor(ax, tri, xy_3x2, values, norm):
  xy = tri @ xy_3x2
  t = matplotlib.tri.Triangulation(xy[:, 0], xy[:, 1])
  return ax.tripcolor(t, plots.clipped(values), shading='gouraud', norm=norm,
                      cmap='viridis')


def _draw_raw(ax, s, key, tri, norm):
  n = s['n_solutions']
  pos = positions(n)
  want = {(0, a, a + 1) for a in range(1, n - 1)}
  mappable = None
  for i, f in enumerate(s['raw']['faces']):
    if tuple(f) in want:
      mappable = _tripcolor(ax, tri, pos[f], s['raw'][key][i], norm)
  _mark_vertices(ax, pos, s['labels'], 7)
  return mappable


def _mark_vertices(ax, xy, labels, fontsize: int) -> None:
  """White dots with their labels at a triangle's vertices; no axes."""
  for (x, y), label in zip(xy, labels):
    ax.plot(x, y, 'wo', ms=4, mec='k')
    ax.annotate(label, (x, y), fontsize=fontsize,
                xytext=(fontsize - 3, fontsize - 3),
                textcoords='offset points')
  ax.set_aspect('equal')
  ax.axis('off')


def _draw_complex(ax, s, key, tri, norm):
  n = s['n_solutions']
  faces = [tuple(f) for f in s['trained']['faces']]
  mappable = None
  for i, xy in enumerate(petals(n)):
    f = (i, n, n + 1)
    if f in faces:
      mappable = _tripcolor(ax, tri, xy, s['trained'][key][faces.index(f)],
                            norm)
    _mark_vertices(ax, xy, (s['labels'][i], 'c1', 'c2'), 6)
  return mappable


def _fmt(b: dict[str, Any]) -> str:
  ci = b.get('ci')
  return (f"{b['mean']:.3f}" + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else ''))


def simplex_figure(results: dict[str, Any], folder: str) -> list[str]:
  """Heat maps of the raw simplex and of the complex's simplices {run i,
  c1, c2} drawn apart (test error, then test CE; shared colour scales from
  0), and the paths between every two solutions: the raw edge (dashed) and
  the routes through the complex (solid through c̄, thin through each
  connector), with the worst route's 95 % interval.

  Args:
    results: a `simplex` results.json.
    folder: where figure.png (and the other formats) go.

  Returns:
    The paths written.
  """
  s = results['simplex']
  n, m = s['n_solutions'], s['n_connectors']
  tri = np.asarray(s['grid'])
  fig, axes = plt.subplots(2, 3, figsize=(13.5, 8.4),
                           gridspec_kw={'width_ratios': [1, 1, 1.3]})
  sm = s['sampled']
  for row, (key, label) in enumerate((('error', 'test error'),
                                      ('loss', 'test CE loss'))):
    values = [v for part in (s['raw'], s['trained']) for face in part[key]
              for v in face]
    top = (plots.error_top(values) if key == 'error' else
           float(np.max(plots.clipped(values))) * 1.02 or 1.0)
    norm = matplotlib.colors.Normalize(0.0, top)
    m1 = _draw_raw(axes[row, 0], s, key, tri, norm)
    m2 = _draw_complex(axes[row, 1], s, key, tri, norm)
    if row == 0:
      axes[row, 0].set_title(
          f"raw simplex of the {n} solutions\nmean error of uniform "
          f"points {_fmt(sm['raw_error'])}\nedge barrier "
          f"{s['raw']['barrier_error']:.3f}", fontsize=8)
      axes[row, 1].set_title(
          f"Benton et al.'s complex {{run i, c1..c{m}}}\nmean error of "
          f"uniform points {_fmt(sm['complex_error'])}\n{m} connectors, "
          f"{s['connectors']['epochs_each']} epochs each (drawn apart)",
          fontsize=8)
    mappable = m2 or m1
    if mappable is not None:
      fig.colorbar(mappable, ax=list(axes[row, :2]), shrink=0.85,
                   label=label)
    _draw_paths(axes[row, 2], results['curves'], key, label, s['labels'])
  fig.text(0.01, 0.01, 'Raw panel: the faces (0, a, a+1) that tile the '
           f'{n}-gon. Complex panel: each simplex (run i, c1, c2), with c1 '
           'and c2 repeated; results.json holds every face. BN '
           'recalibrated at every point; intervals: 95% bootstrap over test '
           'examples (and drawn points).', fontsize=7)
  fig.suptitle(f"simplex: {results['model']} on {results['dataset']}, "
               f"{n} runs ({', '.join(s['labels'])})", fontsize=10)
  return plots.save(fig, folder, 'figure')


def _draw_paths(ax, curves, key: str, label: str, names: list[str]) -> None:
  colors = plt.get_cmap('tab10')
  pairs = list(dict.fromkeys(tuple(c['pair']) for c in curves))
  for c in curves:
    color = colors(pairs.index(tuple(c['pair'])) % 10)
    route = c.get('route', '')
    raw = c['panel'] == 'raw edges'
    centroid = route == 'c̄'
    a, b = c['pair']
    ax.plot(c['lambdas'], plots.clipped(c[key]),
            '--' if raw else '-', color=color,
            lw=1.4 if raw or centroid else 0.6, alpha=1.0 if raw or centroid
            else 0.6,
            label=f'{names[a]} – {names[b]}' if raw else None)
  ax.plot([], [], 'k--', lw=1.4, label='raw edge')
  ax.plot([], [], 'k-', lw=1.4, label='through c̄ (connectors\' centroid)')
  ax.plot([], [], 'k-', lw=0.6, alpha=0.6, label='through one connector')
  ax.set_xlabel('position along the path v_a → v_b (the connector at ½)')
  ax.set_ylabel(label)
  ax.grid(alpha=0.3)
  if key == 'error':
    ax.set_ylim(0.0, plots.error_top([v for c in curves
                                      for v in plots.clipped(c['error'])]))
    ax.set_title('paths between every two solutions', fontsize=8)
    ax.legend(fontsize=6, ncol=2)
  else:
    ax.set_ylim(bottom=0.0)


# ------------------------------------------------------------------ config


def _simplex_config() -> Config:
  return Config(dict(
      checkpoints=(), labels=(),
      resolution=8,  # Grid step 1/r: (r+1)(r+2)/2 points per triangle.
      path_resolution=5,  # 2r + 1 points per path, each example kept.
      connectors=2,  # m ≥ 2: the complex is 2-D.
      epochs=10,  # Per connector.
      batch_size=64, samples=5,  # Points of the complex per step.
      optim=Config(dict(name='sgd', lr=0.05, momentum=0.9,
                        weight_decay=0.0)),
      # The authors' λ before its normalisation (their complex script's
      # default 0.1); 0: no volume term.
      volume=0.1,
      samples_eval=24,  # Points drawn from the complex (and the raw one).
      path_margin=0.02,  # A path may exceed its connector's error by this.
      # '' = <probe workdir>/simplex/connectors where the probe gives the
      # studies its workdir; the configs name a folder.
      connectors_dir=''))


def _validate(config: Config) -> None:
  name = config.simplex.optim.name
  if name not in steps.OPTIMIZERS:
    raise InputError(f'Unknown optimizer {name!r}; choose one of '
                     f'{steps.OPTIMIZERS} (config.simplex.optim.name).')
  if config.simplex.connectors < 2:
    raise InputError(
        f'config.simplex.connectors={config.simplex.connectors}: Benton et '
        "al.'s complex needs m ≥ 2 connectors to be 2-D (simplices {v_i, "
        'c1, c2}); use 2 or more.')


SIMPLEX = Study(
    'simplex', simplex, _simplex_config, validate=_validate,
    figure=simplex_figure,
    fields=(checks.count('simplex.resolution'),
            checks.count('simplex.path_resolution'),
            checks.count('simplex.connectors'),
            checks.count('simplex.epochs', 0),
            checks.count('simplex.batch_size'),
            checks.count('simplex.samples'),
            checks.count('simplex.samples_eval'),
            checks.positive('simplex.optim.lr'),
            checks.Field('simplex.optim.momentum', float, lo=0, hi=1,
                         hi_open=True),
            checks.Field('simplex.optim.weight_decay', float, lo=0),
            checks.Field('simplex.volume', float, lo=0),
            checks.Field('simplex.path_margin', float, lo=0)),
    checkpoints=members.checkpoints, multi_run=True,
    check_checkpoints=members.check_runs)

# This family's studies, in the order of the registry (probe/registry.py).
STUDIES = (SIMPLEX, ensembles.ENSEMBLES)
