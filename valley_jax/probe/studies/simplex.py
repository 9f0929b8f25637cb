"""Simplexes of independent solutions and their ensembles (Fort & Jastrzebski
2019, PAPER.md Sect. 8; SPRO/ESPRO of Benton et al. 2021).

Both kinds measure the N ≥ 3 runs of config.simplex.checkpoints (independently
trained runs of one model on one dataset, their last epochs) and share one
set of trained connectors (the math: valley_jax/core/subspace.py).

Kind `simplex`:

* the raw simplex: test loss and error on a barycentric grid of every 2-face
  of the solutions' simplex (resolution r: (r+1)(r+2)/2 points per triangle);
* the trained complex: m connectors (config.simplex.connectors, default 1)
  are added and trained with the solutions fixed, so that points drawn
  uniformly from the complex (each pair of solutions with the connectors,
  weights from Dirichlet(1)) have a low training loss; optionally minus
  λ · log-volume (config.simplex.log_volume_weight). Its grid covers every
  2-face of the complex that holds a connector.

Every grid point has its BN statistics recalibrated (config.sweep.recal),
and all points of both grids, the raw centre (the mean of the solutions) and
the trained centre (the mean of the connectors) are one compiled sweep call
(`sweep.make_sweep`, θ = v_0 + Σ_k w_k (v_k − v_0) with barycentric w).
Reported for both: the mean and max test error over the grid, the barrier
(the max along the edges that join two solutions, minus the mean of the
vertices: for the raw simplex its edges, for the trained one the paths
v_a → c → v_b through a connector) and the error of the centre against the
vertices'. The trained complex keeps the raw edges v_a–v_b as sides of its
triangles, so its max over the whole grid includes them: its
`max_error_off_solution_edges` is the max over the rest.

Connector training, and BN: each step draws `samples` points and evaluates
each on the whole batch in train mode, so BatchNorm normalises with that
point's own batch statistics (the running statistics it would update are
dropped: every point is recalibrated when measured). Optimiser: optax, as
config.simplex.optim ('sgd' with momentum, cosine decay over the epochs).
The connectors start at the solutions' centroid (for m = 1 and N = 3 the
trained complex starts as the raw triangle cut into three around its
centre). They are kept as Orbax checkpoints, one per epoch, in
config.simplex.connectors_dir (default <probe workdir>/simplex/connectors);
a stopped training resumes from its last epoch and ends with bit-identical
connectors (keys fold_in(seed, step), the batch order of each epoch fixed
by the seed).
Connectors trained for other runs or settings are refused, not reused.

Kind `ensembles`: ensembles (averaged predicted probabilities) of M members
(config.ensembles.members, default N) of three kinds: the independent
solutions; M checkpoints of the first run's trajectory (its last M kept
epochs ≥ 1, or config.ensembles.trajectory_epochs); M points drawn from the
trained complex (ESPRO). Per set: accuracy and NLL of the ensemble and the
mean of its members, the mean pairwise disagreement of the members'
predictions and cosine of their parameters, and the test error of the
weight average of the set (one sweep call, BN recalibrated). Every member
is recalibrated too (config.sweep.recal), so the sets differ only in their
weights.

>>> np.round(path_lambdas(2), 2).tolist()
[0.0, 0.25, 0.5, 0.75, 1.0]
"""

from __future__ import annotations

import dataclasses
import os
import time
from typing import Any

import jax
import jax.numpy as jnp
from jax import flatten_util
import matplotlib.colors
import matplotlib.tri
import ml_collections
import numpy as np
import optax
import tqdm
from etils import epath

from valley_jax import (checkpoint, checks, data, distributed, outputs, plots,
                        rundir, sharding)
from valley_jax.core import steps, subspace, sweep
from valley_jax.data import pipeline
from valley_jax.errors import InputError
from valley_jax.plots import plt
from valley_jax.probe.prober import Prober, Subject, architecture
from valley_jax.probe.studies import common
from valley_jax.probe.study import Study

Config = ml_collections.ConfigDict
PyTree = Any
# The stored config of a connectors folder says what it is.
CONNECTORS_KIND = 'simplex_connectors'
# Weights below this count as zero when a point's support is read.
_ZERO = 1e-9


# ------------------------------------------------------------------- grids


@dataclasses.dataclass
class Grid:
  """Every point of one simplex probe, each once.

  Attributes:
    points: [U, N + m] distinct barycentric weights (solutions, connectors).
    tri: [G, 3] the grid of one triangle.
    raw_faces: [Fr, 3] the solutions' triangles.
    raw_idx: [Fr, G] row of `points` of each raw grid point.
    trained_faces: [Ft, 3] the complex's triangles that hold a connector.
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
    n_connectors: m ≥ 0.
    resolution: r ≥ 1, the grid step 1/r.

  Returns:
    The Grid.

  >>> g = make_grid(3, 1, 2)
  >>> g.points.shape, g.raw_idx.shape, g.trained_idx.shape
  ((11, 4), (1, 6), (3, 6))
  """
  v = n_solutions + n_connectors
  tri = subspace.barycentric_grid(3, resolution)
  raw_faces = subspace.faces(range(n_solutions), 3)
  trained = (subspace.complex_triangles(n_solutions, n_connectors)
             if n_connectors else np.zeros((0, 3), np.int64))
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
  """λ ∈ [0, 1] along v_a → c → v_b: 2r + 1 points, c at ½."""
  return np.linspace(0.0, 1.0, 2 * resolution + 1)


def _edge(grid: Grid, a: int, b: int, r: int) -> list[int]:
  """The rows of the r + 1 grid points from vertex a to vertex b."""
  eye = np.eye(grid.points.shape[1])
  return [grid.index((1 - t) * eye[a] + t * eye[b])
          for t in np.linspace(0.0, 1.0, r + 1)]


def _support(points: np.ndarray) -> np.ndarray:
  return points > _ZERO


def summarize(grid: Grid, loss: np.ndarray, error: np.ndarray
              ) -> dict[str, Any]:
  """The raw and trained summaries of one evaluated grid (see module doc).

  Args:
    grid: the Grid.
    loss, error: [U] values at grid.points.

  Returns:
    {'vertices', 'raw', 'trained'}: per vertex values and their mean; per
    complex the mean, max, barrier and centre of error and loss.
  """
  n = grid.n_solutions
  sup = _support(grid.points)
  size = sup.sum(1)
  solution_edge = (size <= 2) & ~sup[:, n:].any(1)
  connector_edge = (size <= 2) & sup[:, n:].any(1)
  vert = [grid.vertex(i) for i in range(n)]
  out = {'vertices': {'error': error[vert].tolist(),
                      'loss': loss[vert].tolist(),
                      'mean_error': float(error[vert].mean()),
                      'mean_loss': float(loss[vert].mean())}}
  for name, idx, edges, centre in (
      ('raw', grid.raw_idx, solution_edge, grid.raw_centre),
      ('trained', grid.trained_idx, connector_edge, grid.trained_centre)):
    part = {'faces': (grid.raw_faces if name == 'raw' else
                      grid.trained_faces).tolist()}
    on = np.zeros(len(grid.points), bool)
    on[idx.ravel()] = True
    for key, v in (('error', error), ('loss', loss)):
      part[key] = v[idx].tolist()
      vals = v[idx]
      part[f'mean_{key}'] = float(vals.mean()) if vals.size else None
      part[f'max_{key}'] = float(vals.max()) if vals.size else None
      ridge = v[on & edges]
      part[f'barrier_{key}'] = (float(ridge.max()) -
                                out['vertices'][f'mean_{key}']
                                if ridge.size else None)
      part[f'centre_{key}'] = float(v[centre])
      if name == 'trained':
        off = v[on & ~solution_edge]
        part[f'max_{key}_off_solution_edges'] = (float(off.max()) if off.size
                                                 else None)
    part['barrier'] = part['barrier_error']
    out[name] = part
  return out


def path_curves(grid: Grid, loss: np.ndarray, error: np.ndarray,
                labels: list[str], resolution: int) -> list[dict[str, Any]]:
  """Per pair of solutions: its raw edge and its path through connector 1,
  as results.json curves (λ from v_a to v_b)."""
  n, r = grid.n_solutions, resolution
  has_c = grid.points.shape[1] > n
  curves = []
  for a, b in subspace.faces(range(n), 2).tolist():
    idx = _edge(grid, a, b, r)
    curves.append(common.curve(
        f'{labels[a]} – {labels[b]}', 'raw edges',
        np.linspace(0.0, 1.0, r + 1), loss[idx], error[idx],
        pair=[a, b], **common.curve_meta('simplex edge', False, None,
                                         'none')))
    if has_c:
      idx = _edge(grid, a, n, r) + _edge(grid, n, b, r)[1:]
      curves.append(common.curve(
          f'{labels[a]} – c1 – {labels[b]}', 'through the connector',
          path_lambdas(r), loss[idx], error[idx], pair=[a, b],
          **common.curve_meta('simplex path', False, None, 'none')))
  return curves


# --------------------------------------------------------------- the runs


def _labels(config: Config) -> list[str]:
  c = config.simplex
  return list(c.labels) or [os.path.basename(str(w).rstrip('/')) or str(w)
                            for w in c.checkpoints]


def _checkpoints(config: Config) -> list[tuple[str, Any]]:
  return [(w, 'last') for w in config.simplex.checkpoints]


def check_runs(config: Config) -> None:
  """config.simplex.checkpoints: at least 3 distinct runs, kept, of one
  architecture on one dataset (InputError naming the field otherwise; a
  missing run is an InputFileError, so that probe.py may train it first)."""
  c, where = config.simplex, 'config.simplex.checkpoints'
  runs = list(c.checkpoints)
  if len(runs) < 3:
    raise InputError(
        f'{where} names {len(runs)} run(s); a simplex of solutions needs at '
        'least 3 independently trained runs of one model (their workdirs; '
        'configs/probe_simplex.py trains three).')
  if len(set(runs)) != len(runs):
    raise InputError(f'{where}={tuple(runs)} names a run twice: the '
                     'simplex would be flat.')
  if c.labels and len(c.labels) != len(runs):
    raise InputError('config.simplex.labels must match '
                     'config.simplex.checkpoints.')
  for w in runs:
    common.check_checkpoint(w, 'last', where)
  first = _signature(runs[0])
  for i, w in enumerate(runs[1:], 1):
    if _signature(w) != first:
      raise InputError(
          f'{where}[{i}]={w!r} is another model or dataset than '
          f'{where}[0]={runs[0]!r} ({_signature(w)} vs {first}): the '
          'vertices of a simplex must be runs of one architecture on one '
          'dataset.')


def _signature(workdir: str) -> tuple[str, str]:
  cfg = checkpoint.load_config(workdir)
  return architecture(cfg), cfg['data']['name']


def solutions(p: Prober) -> list[Subject]:
  """The N runs of config.simplex.checkpoints, their last epochs."""
  c = p.config.simplex
  subs = [p.subject(w, label=label)
          for w, label in zip(c.checkpoints, _labels(p.config))]
  first = {'params': subs[0].params, 'batch_stats': subs[0].batch_stats}
  for i, s in enumerate(subs[1:], 1):
    rundir.check_same_architecture(
        first, {'params': s.params, 'batch_stats': s.batch_stats},
        f'config.simplex.checkpoints[{i}]={s.workdir!r}')
  return subs


# -------------------------------------------------------------- connectors


def connectors_dir(p: Prober) -> str:
  """config.simplex.connectors_dir, else <probe workdir>/simplex/connectors
  (Prober.workdir, which probe.py sets)."""
  d = p.config.simplex.connectors_dir
  if d:
    return d
  if p.workdir:
    return str(epath.Path(p.workdir) / 'simplex' / 'connectors')
  raise InputError(
      'config.simplex.connectors_dir is empty: name the folder that keeps '
      'the trained connectors (e.g. runs/simplex_connectors).')


def connector_settings(p: Prober, subs: list[Subject]) -> dict[str, Any]:
  """What the connectors are trained from and how: stored with them, and a
  folder holding connectors of other settings is refused."""
  c = p.config.simplex
  return checkpoint.as_json({
      'kind': CONNECTORS_KIND,
      'solutions': [{k: v for k, v in checkpoint.provenance(
          s.workdir, s.epoch).items() if k != 'train_config'}
                    for s in subs],
      'connectors': c.connectors, 'epochs': c.epochs,
      'batch_size': c.batch_size, 'samples': c.samples,
      'optim': c.optim.to_dict(), 'log_volume_weight': c.log_volume_weight,
      'init_noise': c.init_noise, 'seed': p.config.seed})


def trained_connectors(p: Prober, subs: list[Subject]
                       ) -> tuple[list[PyTree], list[dict[str, Any]], str]:
  """The connectors of these solutions: trained, resumed or restored.

  Returns:
    (the m connectors, the training history, their folder).
  """
  s0 = subs[0]
  folder = connectors_dir(p)
  augment = bool(s0.train_config['data'].get('augment')) and (
      s0.dataset.augmentable)
  conns, history = train_connectors(
      s0.model, s0.dataset, [s.params for s in subs], s0.batch_stats,
      folder, connector_settings(p, subs), p.mesh, augment=augment)
  return subspace.unstack(conns), history, folder


def fingerprint(connectors: list[PyTree]) -> str:
  """checkpoint.fingerprint of the connectors (results.json's record of
  which connectors were measured)."""
  return checkpoint.fingerprint({'params': subspace.stack(connectors)})


def _refuse_other(folder: str, settings: dict[str, Any]) -> None:
  if not checkpoint.epochs(folder):
    return
  old = checkpoint.load_config(folder)
  diff = rundir.config_diff(old or {}, settings)
  if diff and diff != ['epochs']:
    raise InputError(
        f'config.simplex.connectors_dir={folder!r} holds connectors trained '
        f'with other runs or settings ({", ".join(diff[:4])} differ): delete '
        'that folder or name another.')


def train_connectors(model, ds: data.Dataset, solutions_list: list[PyTree],
                     batch_stats: PyTree, folder: str,
                     settings: dict[str, Any], mesh, *,
                     augment: bool = False, stop_after: int | None = None
                     ) -> tuple[PyTree, list[dict[str, Any]]]:
  """Trains (or resumes, or restores) the connectors of `solutions_list`.

  Args:
    model: the flax module of the solutions.
    ds: the dataset (its training split).
    solutions_list: the N fixed solutions (params).
    batch_stats: any solution's BN statistics (their structure only).
    folder: where the Orbax checkpoints and metrics.jsonl go.
    settings: connector_settings (connectors, epochs, batch_size, samples,
      optim, log_volume_weight, init_noise, seed).
    mesh: the mesh the batches are split over.
    augment: random crops and flips, as the runs were trained.
    stop_after: stop after this epoch (a pre-emption, for tests).

  Returns:
    (the connectors stacked [m, ...], the per-epoch history).
  """
  n, bs = len(ds.y_train), settings['batch_size']
  if bs > n:
    raise InputError(f'config.simplex.batch_size={bs} exceeds the {n} '
                     'training examples.')
  sharding.check_divisible(mesh, bs, 'config.simplex.batch_size')
  tx, _ = steps.make_optimizer(Config(settings['optim']),
                               n // bs * settings['epochs'])
  rep = sharding.replicated(mesh)
  sols = jax.device_put(subspace.stack(solutions_list), rep)
  root = jax.random.key(settings['seed'])
  conns = subspace.init_connectors(sols, settings['connectors'],
                                   jax.random.fold_in(root, 0),
                                   settings['init_noise'])
  state = jax.device_put(steps.init_state(
      {'params': conns, 'batch_stats': {}}, tx), rep)
  stats = jax.device_put(jax.tree.map(jnp.zeros_like, batch_stats), rep)
  simplices = subspace.complex_simplices(len(solutions_list),
                                         settings['connectors'])
  step = jax.jit(subspace.make_connector_step(
      model, tx, simplices, ds.mean, ds.std, augment=augment,
      samples=settings['samples'],
      log_volume_weight=settings['log_volume_weight']),
      in_shardings=(rep, rep, rep, sharding.sharded(mesh),
                    sharding.sharded(mesh), rep),
      out_shardings=(rep, rep), donate_argnums=0)
  _refuse_other(folder, settings)
  with rundir.lock(folder, 'config.simplex.connectors_dir'):
    mngr = rundir.open_run(folder, settings, overwrite=False,
                           length='epochs')
    start, items, history = checkpoint.start_or_resume(
        mngr, checkpoint.state_items(state), settings,
        rundir.metrics_path(folder))
    state = checkpoint.state_from_items(items)
    last = settings['epochs'] if stop_after is None else stop_after
    key = jax.random.fold_in(root, 1)
    for epoch in tqdm.trange(start + 1, last + 1, desc='connectors',
                             disable=distributed.progress_disabled(),
                             initial=start, total=settings['epochs']):
      t0, ms = time.time(), []
      for idx in pipeline.epoch_batches(n, bs, settings['seed'], epoch):
        xb, yb = sharding.gather(mesh, (ds.x_train, ds.y_train), idx)
        state, m = step(state, sols, stats, xb, yb, key)
        ms.append(m)
      history.append(_epoch_row(epoch, ms, t0))
      checkpoint.save(mngr, epoch, state, settings, history)
      outputs.write_jsonl(rundir.metrics_path(folder), history)
    mngr.wait_until_finished()
    mngr.close()
  return state.params, history


def _epoch_row(epoch: int, ms: list[dict[str, Any]], t0: float
               ) -> dict[str, Any]:
  losses = np.array([m['loss'] for m in ms], np.float64)
  if not np.all(np.isfinite(losses)):
    raise checks.NonFiniteLossError(
        f'The connectors\' training loss became non-finite in epoch {epoch}: '
        'lower config.simplex.optim.lr (or log_volume_weight). The last '
        'good epoch is kept.')
  return outputs.finite_or_none({
      'epoch': epoch, 'train_loss': float(losses.mean()),
      'train_accuracy': float(np.mean([m['accuracy'] for m in ms])),
      'log_volume': float(np.mean([m['log_volume'] for m in ms])),
      'seconds': round(time.time() - t0, 3)})


# ------------------------------------------------------------ kind: simplex


def simplex(p: Prober, _) -> dict[str, Any]:
  """The raw simplex and the trained complex: grids, barriers, centres.

  Args:
    p: the Prober.

  Returns:
    Per pair of solutions its raw edge and its path through the connector
    ('curves'), and 'simplex': the grid, every face's values and the
    summaries (see the module doc).
  """
  c = p.config.simplex
  subs = solutions(p)
  conns, history, folder = trained_connectors(p, subs)
  grid = make_grid(len(subs), len(conns), c.resolution)
  out = evaluate_points(subs[0].sweep, [s.params for s in subs] + conns,
                        subs[0].batch_stats, grid.points)
  p.bar.update(1)
  labels = [s.label for s in subs]
  summary = summarize(grid, out['loss'], out['error'])
  return {'curves': path_curves(grid, out['loss'], out['error'], labels,
                                c.resolution),
          'simplex': {'labels': labels, 'n_solutions': len(subs),
                      'n_connectors': len(conns),
                      'resolution': c.resolution,
                      'grid': grid.tri.tolist(), **summary,
                      'connectors': {'folder': folder,
                                     'fingerprint': fingerprint(conns),
                                     'epochs': len(history),
                                     'history': history}}}


# -------------------------------------------------------- kind: ensembles


def trajectory_epochs(config: Config) -> list[int]:
  """config.ensembles.trajectory_epochs, or the last M kept epochs ≥ 1 of
  the first run (M = members; fewer when it keeps fewer)."""
  e = config.ensembles
  if e.trajectory_epochs:
    return sorted({int(x) for x in e.trajectory_epochs})
  runs = config.simplex.checkpoints
  kept = [x for x in checkpoint.epochs(runs[0]) if x >= 1] if runs else []
  return kept[-_members(config):]


def _members(config: Config) -> int:
  return config.ensembles.members or len(config.simplex.checkpoints)


def _ensemble_checkpoints(config: Config) -> list[tuple[str, Any]]:
  runs = config.simplex.checkpoints
  return _checkpoints(config) + [(runs[0], x)
                                 for x in trajectory_epochs(config)]


def _check_ensembles(config: Config) -> None:
  check_runs(config)
  m, n = _members(config), len(config.simplex.checkpoints)
  if not 2 <= m <= n:
    raise InputError(f'config.ensembles.members={m} must be in [2, {n}] '
                     '(the runs of config.simplex.checkpoints; 0 = all).')
  run0 = config.simplex.checkpoints[0]
  epochs = trajectory_epochs(config)
  if len(epochs) < 2:
    raise InputError(
        f'{run0} keeps {len(epochs)} epoch(s) ≥ 1; a trajectory ensemble '
        'needs 2 or more (its config.train.keep_epochs, or '
        'config.ensembles.trajectory_epochs).')
  for x in epochs:
    common.check_checkpoint(run0, x, 'config.ensembles.trajectory_epochs')


def make_predict(model, mean, std):
  """jit fn(params, batch_stats, recal_x, batches) -> probabilities
  [S, B, C] on the evaluation batches, BN recalibrated on recal_x first
  (None: the statistics as given)."""

  @jax.jit
  def predict(params, batch_stats, recal_x, batches: sweep.Batches):
    if recal_x is not None:
      batch_stats = sweep.recalibrate(model, params, batch_stats, recal_x,
                                      mean, std)

    def batch(_, x):
      x = pipeline.normalize(x, mean, std)
      logits, _ = steps.apply_model(model, params, batch_stats, x, False)
      return None, jax.nn.softmax(logits.astype(jnp.float32))

    return jax.lax.scan(batch, None, batches.x)[1]

  return predict


def _flat(params: PyTree) -> np.ndarray:
  return np.asarray(flatten_util.ravel_pytree(params)[0], np.float64)


def ensemble_row(name: str, labels: list[str], members, predict,
                 setting: sweep.Setting) -> dict[str, Any]:
  """The measures of one set of (params, batch_stats) members.

  Args:
    name: the set's name.
    labels: its members' names.
    members: (params, batch_stats) per member.
    predict: from make_predict.
    setting: the sweep setting whose evaluation batches (and recalibration
      batches) are used.

  Returns:
    subspace.ensemble_metrics and the members' mean pairwise cosine.
  """
  ev = setting.eval_data
  keep = np.asarray(ev.w).ravel() > 0
  y = np.asarray(ev.y).ravel()[keep]
  probs = []
  for w, st in members:
    out = np.asarray(predict(w, st, setting.recal_x, ev), np.float64)
    probs.append(out.reshape(-1, out.shape[-1])[keep])
  cos = subspace.pairwise_cosines(np.stack([_flat(w) for w, _ in members]))
  return {'set': name, 'members': labels,
          **subspace.ensemble_metrics(np.stack(probs), y),
          'cosine': subspace.mean_off_diagonal(cos)}


def ensembles(p: Prober, _) -> dict[str, Any]:
  """Ensembles of independent runs, of one trajectory and of the trained
  complex (ESPRO); see the module doc.

  Args:
    p: the Prober.

  Returns:
    'ensembles': one row per set (ensemble_row, and the error and loss of
    the set's weight average); 'curves' is empty.
  """
  subs = solutions(p)
  m = _members(p.config)
  conns, _, folder = trained_connectors(p, subs)
  s0 = subs[0]
  if not isinstance(s0.sweep.eval_data, sweep.Batches):
    raise InputError('ensembles needs the test set on the device: set '
                     'config.sweep.stream_batches=0.')
  traj = [p.subject(s0.workdir, x, f'{s0.label}@{x}')
          for x in trajectory_epochs(p.config)]
  n, v = len(subs), len(subs) + len(conns)
  key = jax.random.fold_in(p.root, 0xE5)
  w_MxV = np.stack([np.asarray(subspace.sample_weights(
      jax.random.fold_in(key, i), subspace.complex_simplices(n, len(conns)),
      v)) for i in range(m)]).astype(np.float64)
  stacked = subspace.stack([s.params for s in subs] + conns)
  samples = [subspace.combine(stacked, jnp.asarray(w, jnp.float32))
             for w in w_MxV]
  sets = {
      'independent': ([s.label for s in subs[:m]],
                      [(s.params, s.batch_stats) for s in subs[:m]]),
      'trajectory': ([t.label for t in traj],
                     [(t.params, t.batch_stats) for t in traj]),
      'simplex': ([f'sample {i + 1}' for i in range(m)],
                  [(w, s0.batch_stats) for w in samples])}
  predict = make_predict(s0.model, s0.dataset.mean, s0.dataset.std)
  rows = [ensemble_row(name, labels, members, predict, s0.sweep)
          for name, (labels, members) in sets.items()]
  avg = _weight_averages(subs, m, conns, traj, w_MxV)
  for row, loss, err in zip(rows, avg['loss'], avg['error']):
    row.update(average_error=float(err), average_loss=float(loss),
               average_accuracy=float(1.0 - err))
  p.bar.update(1)
  return {'curves': [], 'ensembles': {
      'members': m, 'sets': rows, 'samples': w_MxV.tolist(),
      'connectors': {'folder': folder, 'fingerprint': fingerprint(conns)}}}


def _weight_averages(subs: list[Subject], m: int, conns, traj,
                     w_MxV: np.ndarray) -> dict[str, np.ndarray]:
  """Loss and error of the three sets' weight averages (the first m
  solutions, the trajectory, the complex's samples): one sweep call on the
  vertices [the N solutions, the connectors, the trajectory]."""
  vertices = ([s.params for s in subs] + list(conns) +
              [x.params for x in traj])
  v = len(subs) + len(conns)
  points = np.zeros((3, len(vertices)))
  points[0, :m] = 1.0 / m
  points[1, v:] = 1.0 / len(traj)
  points[2, :v] = w_MxV.mean(0)
  return evaluate_points(subs[0].sweep, vertices, subs[0].batch_stats,
                         points)


# ------------------------------------------------------------------ figures


def positions(n: int, m: int) -> np.ndarray:
  """2D places of the vertices in the figure: the solutions on a regular
  n-gon (the first at the top), connector 1 at its centre, the others on a
  small circle around it.

  >>> positions(3, 1).round(3).tolist()[::3]
  [[0.0, 1.0], [0.0, 0.0]]
  """
  ang = np.pi / 2 + 2 * np.pi * np.arange(n) / n
  a = 2 * np.pi * np.arange(m) / max(m, 1)
  conn = 0.25 * np.stack([np.cos(a), np.sin(a)], 1)
  if m:
    conn[0] = 0.0
  return np.concatenate([np.stack([np.cos(ang), np.sin(ang)], 1), conn])


def drawn_faces(faces_FxD, n: int, raw: bool) -> list[int]:
  """The faces that tile the n-gon without overlapping (all of them for
  n = 3, m = 1): the raw fan (0, a, a+1) and the trained (a, a+1, c1)."""
  want = ({(0, a, a + 1) for a in range(1, n - 1)} if raw else
          {tuple(sorted((a, (a + 1) % n, n))) for a in range(n)})
  return [i for i, f in enumerate(np.asarray(faces_FxD).tolist())
          if tuple(f) in want]


def _draw_complex(ax, part: dict[str, Any], key: str, tri, pos, n: int,
                  raw: bool, norm):
  mappable = None
  for i in drawn_faces(part['faces'], n, raw):
    xy = tri @ pos[part['faces'][i]]
    t = matplotlib.tri.Triangulation(xy[:, 0], xy[:, 1])
    mappable = ax.tripcolor(t, plots.clipped(part[key][i]), shading='gouraud',
                            norm=norm, cmap='viridis')
  ax.set_aspect('equal')
  ax.axis('off')
  return mappable


def _mark_vertices(ax, pos, labels: list[str], m: int) -> None:
  for (x, y), label in zip(pos, labels + [f'c{j + 1}' for j in range(m)]):
    ax.plot(x, y, 'wo', ms=4, mec='k')
    ax.annotate(label, (x, y), fontsize=7, xytext=(4, 4),
                textcoords='offset points')


def _summary_title(name: str, part: dict[str, Any]) -> str:
  def f(v):
    return 'n/a' if v is None else f'{v:.3f}'
  return (f"{name}\ntest error: mean {f(part['mean_error'])}, max "
          f"{f(part['max_error'])}\nbarrier {f(part['barrier_error'])}, "
          f"centre {f(part['centre_error'])}")


def simplex_figure(results: dict[str, Any], folder: str) -> list[str]:
  """Triangle heat maps of the raw simplex and the trained complex (test
  error, then test CE loss; shared colour scales from 0), and the paths
  between every two solutions: the raw edge (dashed) and the path through
  connector 1 (solid).

  Args:
    results: a `simplex` results.json.
    folder: where figure.png (and the other formats) go.

  Returns:
    The paths written.
  """
  s = results['simplex']
  n, m = s['n_solutions'], s['n_connectors']
  tri, pos = np.asarray(s['grid']), positions(n, m)
  fig, axes = plt.subplots(2, 3, figsize=(13.5, 8.0),
                           gridspec_kw={'width_ratios': [1, 1, 1.25]})
  for row, (key, label) in enumerate((('error', 'test error'),
                                      ('loss', 'test CE loss'))):
    values = [v for part in (s['raw'], s['trained']) for face in part[key]
              for v in face]
    top = (plots.error_top(values) if key == 'error' else
           float(np.max(plots.clipped(values))) * 1.02 or 1.0)
    norm = matplotlib.colors.Normalize(0.0, top)
    for col, name in enumerate(('raw', 'trained')):
      ax = axes[row, col]
      mappable = _draw_complex(ax, s[name], key, tri, pos, n, name == 'raw',
                               norm)
      _mark_vertices(ax, pos, s['labels'], m if name == 'trained' else 0)
      if row == 0:
        title = ('raw simplex of the solutions' if name == 'raw' else
                 f"trained: {m} connector(s), "
                 f"{s['connectors']['epochs']} epochs")
        ax.set_title(_summary_title(title, s[name]), fontsize=8)
    if mappable is not None:
      fig.colorbar(mappable, ax=list(axes[row, :2]), shrink=0.85,
                   label=label)
    _draw_paths(axes[row, 2], results['curves'], key, label)
  if n > 3:
    fig.text(0.01, 0.01, f'Drawn: the raw faces (0, a, a+1) and the trained '
             f'triangles (a, a+1, c1) that tile the {n}-gon; results.json '
             'holds every face.', fontsize=7)
  fig.suptitle(f"simplex: {results['model']} on {results['dataset']}, "
               f"{n} runs ({', '.join(s['labels'])}), BN recalibrated at "
               'every point', fontsize=10)
  return plots.save(fig, folder, 'figure')


def _draw_paths(ax, curves, key: str, label: str) -> None:
  colors = plt.get_cmap('tab10')
  pairs = list(dict.fromkeys(tuple(c['pair']) for c in curves))
  for c in curves:
    color = colors(pairs.index(tuple(c['pair'])) % 10)
    raw = c['panel'] == 'raw edges'
    ax.plot(c['lambdas'], plots.clipped(c[key]), '--' if raw else '-',
            color=color, lw=1.4, label=c['label'])
  ax.set_xlabel('position along the path v_a → v_b (c1 at ½)')
  ax.set_ylabel(label)
  ax.grid(alpha=0.3)
  if key == 'error':
    ax.set_ylim(0.0, plots.error_top([v for c in curves
                                      for v in plots.clipped(c['error'])]))
    ax.set_title('dashed: raw edge; solid: through the connector',
                 fontsize=8)
    ax.legend(fontsize=6)
  else:
    ax.set_ylim(bottom=0.0)


def ensembles_figure(results: dict[str, Any], folder: str) -> list[str]:
  """Per set (independent runs, one trajectory, the trained complex): test
  error of the members (mean), the ensemble and the weight average; NLL of
  the members and the ensemble; prediction disagreement and weight cosine.

  Args:
    results: an `ensembles` results.json.
    folder: where figure.png (and the other formats) go.

  Returns:
    The paths written.
  """
  e = results['ensembles']
  rows = e['sets']
  x = np.arange(len(rows))
  fig, axes = plt.subplots(1, 3, figsize=(13.0, 3.6))
  bars = (('members (mean)', lambda r: 1 - r['member_accuracy']),
          ('ensemble', lambda r: 1 - r['accuracy']),
          ('weight average', lambda r: r['average_error']))
  for k, (label, get) in enumerate(bars):
    b = axes[0].bar(x + (k - 1) * 0.27, [get(r) for r in rows], 0.27,
                    label=label, color=f'C{k}')
    axes[0].bar_label(b, fmt='%.3f', fontsize=6, padding=1)
  axes[0].set_ylim(0.0, plots.error_top([get(r) for r in rows
                                         for _, get in bars]) * 1.1)
  axes[0].set_ylabel('test error')
  axes[0].legend(fontsize=7)
  for k, (key, label) in enumerate((('member_nll', 'members (mean)'),
                                    ('nll', 'ensemble'))):
    b = axes[1].bar(x + (k - 0.5) * 0.35, [r[key] for r in rows], 0.35,
                    color=f'C{k}', label=label)
    axes[1].bar_label(b, fmt='%.3f', fontsize=6, padding=1)
  axes[1].set_ylim(bottom=0.0)
  axes[1].set_ylabel('test NLL (colours as on the left)')
  for k, (key, label) in enumerate((('disagreement',
                                     'prediction disagreement'),
                                    ('cosine', 'weight cosine'))):
    b = axes[2].bar(x + (k - 0.5) * 0.35,
                    plots.clipped([r[key] for r in rows]), 0.35,
                    color=f'C{k + 3}', label=label)
    axes[2].bar_label(b, fmt='%.3f', fontsize=6, padding=1)
  axes[2].set_ylim(0.0, 1.1)
  axes[2].set_ylabel('mean over pairs of members')
  axes[2].legend(fontsize=7)
  for ax in axes:
    ax.set_xticks(x, [f"{r['set']}\n({len(r['members'])})" for r in rows],
                  fontsize=8)
    ax.grid(alpha=0.3, axis='y')
  fig.suptitle(f"ensembles: {results['model']} on {results['dataset']}"
               f"{plots.checkpoint_label(results)}: {e['members']} members "
               'per set, BN recalibrated', fontsize=10)
  fig.tight_layout()
  return plots.save(fig, folder, 'figure')


# ------------------------------------------------------------------ config


def _simplex_config() -> Config:
  return Config(dict(
      checkpoints=(), labels=(),
      resolution=10,  # Grid step 1/r: (r+1)(r+2)/2 points per triangle.
      connectors=1,
      epochs=10, batch_size=64, samples=1,
      optim=Config(dict(name='sgd', lr=0.05, momentum=0.9,
                        weight_decay=0.0)),
      log_volume_weight=0.0,
      # Connectors 2..m start at the centroid moved by this times N(0, 1)
      # times the solutions' elementwise std (connector 1: the centroid).
      init_noise=0.5,
      # '' = <probe workdir>/simplex/connectors where the probe gives the
      # studies its workdir; the configs name a folder.
      connectors_dir=''))


def _ensembles_config() -> Config:
  return Config(dict(members=0,  # 0: as many as runs.
                     trajectory_epochs=()))  # (): the last kept epochs.


def _validate(config: Config) -> None:
  name = config.simplex.optim.name
  if name not in steps.OPTIMIZERS:
    raise InputError(f'Unknown optimizer {name!r}; choose one of '
                     f'{steps.OPTIMIZERS} (config.simplex.optim.name).')


SIMPLEX = Study(
    'simplex', simplex, _simplex_config, validate=_validate,
    figure=simplex_figure,
    fields=(checks.count('simplex.resolution'),
            checks.count('simplex.connectors'),
            checks.count('simplex.epochs', 0),
            checks.count('simplex.batch_size'),
            checks.count('simplex.samples'),
            checks.positive('simplex.optim.lr'),
            checks.Field('simplex.optim.momentum', float, lo=0, hi=1,
                         hi_open=True),
            checks.Field('simplex.optim.weight_decay', float, lo=0),
            checks.Field('simplex.log_volume_weight', float, lo=0),
            checks.Field('simplex.init_noise', float, lo=0)),
    checkpoints=_checkpoints, multi_run=True, check_checkpoints=check_runs)

ENSEMBLES = Study(
    'ensembles', ensembles, _ensembles_config, figure=ensembles_figure,
    fields=(checks.count('ensembles.members', 0,
                         why='0: one member per run of config.simplex'),
            checks.count('ensembles.trajectory_epochs')),
    checkpoints=_ensemble_checkpoints, multi_run=True,
    check_checkpoints=_check_ensembles)

# This family's studies, in the order of the registry (probe/registry.py).
STUDIES = (SIMPLEX, ENSEMBLES)
