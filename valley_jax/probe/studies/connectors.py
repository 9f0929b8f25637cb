"""Vertices added to fixed solutions and trained one after another (Benton
et al. 2021): the connectors of the mode-connecting complex (kind
`simplex`) and the simplex ESPRO grows around each solution (kind
`ensembles`). The math is valley_jax/core/subspace.py.

Vertex j starts at the centroid of every vertex before it, those stay
fixed, and it trains for `epochs` epochs with its own optimiser and cosine
schedule (SGD with momentum as config.simplex.optim), `samples` points of
the complex per step. From vertex `volume_from` on, the loss subtracts
λ_j · log(V² + 1e-4) of the first simplex, λ_j = volume / log(V₀² + 1e-4),
V₀ the volume of a simplex of j + 1 networks drawn from the model's own
initialiser (keys fold_in(seed, 1000 + j)): the authors add the term from
the second connector of the complex and from the first vertex of an ESPRO
simplex.

Each vertex is one resumable Orbax run in <folder>/vertex<j> (one
checkpoint per epoch, its settings stored with it; a folder holding other
settings is refused). A training stopped anywhere resumes from the last
saved epoch of the vertex it was on and ends with bit-identical vertices:
the keys are fold_in(seed, j) and the batch order of each epoch is fixed by
the seed and the epoch.
"""

from __future__ import annotations

import time
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import tqdm
from etils import epath

from valley_jax import (checkpoint, checks, data, distributed, outputs,
                        rundir, sharding)
from valley_jax.core import steps, subspace
from valley_jax.data import pipeline
from valley_jax.errors import InputError
from valley_jax.probe.prober import Prober, Subject

Config = ml_collections.ConfigDict
PyTree = Any
# The stored config of a vertex folder says what it is.
CONNECTORS_KIND = 'simplex_connectors'


def fingerprint(vertices: list[PyTree]) -> str:
  """checkpoint.fingerprint of trained vertices (results.json's record of
  which were measured)."""
  return checkpoint.fingerprint({'params': subspace.stack(vertices)})


def _refuse_other(folder: str, settings: dict[str, Any], field: str) -> None:
  if not checkpoint.epochs(folder):
    return
  old = checkpoint.load_config(folder)
  diff = rundir.config_diff(old or {}, settings)
  if diff:
    raise InputError(
        f'{field}={str(epath.Path(folder).parent)!r} holds vertices trained '
        f'with other runs or settings ({", ".join(diff[:4])} differ): delete '
        'that folder or name another.')


def init_log_sq_volume(model, input_shape, n_vertices: int,
                       key: jax.Array) -> float:
  """log(V₀² + 1e-4) of a simplex of n_vertices networks drawn from the
  model's initialiser (key fold_in(key, i) for network i)."""
  nets = [steps.init_variables(model, jax.random.fold_in(key, i),
                               input_shape)['params']
          for i in range(n_vertices)]
  return float(subspace.log_sq_volume(nets))


def train_vertices(model, ds: data.Dataset, fixed: list[PyTree],
                   batch_stats: PyTree, folder: str,
                   settings: dict[str, Any], mesh, *, augment: bool = False,
                   field: str = 'config.simplex.connectors_dir'
                   ) -> tuple[list[PyTree], list[dict[str, Any]]]:
  """Trains (or resumes, or restores) the vertices added to `fixed`.

  Args:
    model: the flax module of the solutions.
    ds: the dataset (its training split).
    fixed: the N fixed solutions (params); N = 1 grows one simplex.
    batch_stats: any solution's BN statistics (their structure only).
    folder: holds vertex1, vertex2, ... (Orbax runs, metrics.jsonl).
    settings: 'vertices' (how many), 'epochs' (each), 'batch_size',
      'samples', 'optim', 'volume' (the strength before normalisation),
      'volume_from' (the first vertex with the volume term), 'seed', and
      whatever else identifies the solutions.
    mesh: the mesh the batches are split over.
    augment: random crops and flips, as the runs were trained.
    field: the config field that names `folder` (for messages).

  Returns:
    (the added vertices, in order; one history row per epoch of each,
    with its 'vertex' and 'lambda').
  """
  n, bs = len(ds.y_train), settings['batch_size']
  if bs > n:
    raise InputError(f'The vertices\' batch_size={bs} exceeds the {n} '
                     'training examples.')
  sharding.check_divisible(mesh, bs, 'the vertices\' batch_size')
  rep = sharding.replicated(mesh)
  root = jax.random.key(settings['seed'])
  stats = jax.device_put(jax.tree.map(jnp.zeros_like, batch_stats), rep)
  added, history = [], []
  for j in range(1, settings['vertices'] + 1):
    lam = 0.0
    if settings['volume'] and j >= settings['volume_from']:
      lam = subspace.volume_lambda(settings['volume'], init_log_sq_volume(
          model, ds.input_shape, j + 1,
          jax.random.fold_in(root, 1000 + j)))
    vertex, rows = _train_one(
        model, ds, fixed + added, stats, f'{folder}/vertex{j}',
        {**settings, 'vertex': j, 'lambda': lam}, mesh, augment, field,
        jax.random.fold_in(root, j), len(fixed))
    added.append(vertex)
    history += rows
  return added, history


def _train_one(model, ds, vertices: list[PyTree], stats, folder: str,
               settings: dict[str, Any], mesh, augment: bool, field: str,
               key: jax.Array, n_solutions: int
               ) -> tuple[PyTree, list[dict[str, Any]]]:
  """One vertex: vertex `settings['vertex']` of the complex on `vertices`."""
  n, bs = len(ds.y_train), settings['batch_size']
  tx, _ = steps.make_optimizer(Config(settings['optim']),
                               n // bs * settings['epochs'])
  rep = sharding.replicated(mesh)
  fixed = jax.device_put(subspace.stack(vertices), rep)
  state = jax.device_put(steps.init_state(
      {'params': subspace.centroid(fixed), 'batch_stats': {}}, tx), rep)
  simplices = subspace.complex_simplices(
      n_solutions, len(vertices) - n_solutions + 1)
  step = jax.jit(subspace.make_vertex_step(
      model, tx, simplices, ds.mean, ds.std, augment=augment,
      samples=settings['samples'], volume_weight=settings['lambda']),
      in_shardings=(rep, rep, rep, sharding.sharded(mesh),
                    sharding.sharded(mesh), rep),
      out_shardings=(rep, rep), donate_argnums=0)
  _refuse_other(folder, settings, field)
  with rundir.lock(folder, field):
    mngr = rundir.open_run(folder, settings, overwrite=False,
                           length='epochs')
    start, items, history = checkpoint.start_or_resume(
        mngr, checkpoint.state_items(state), settings,
        rundir.metrics_path(folder))
    state = checkpoint.state_from_items(items)
    for epoch in tqdm.trange(start + 1, settings['epochs'] + 1,
                             desc=f"vertex {settings['vertex']}",
                             disable=distributed.progress_disabled(),
                             initial=start, total=settings['epochs']):
      t0, ms = time.time(), []
      for idx in pipeline.epoch_batches(n, bs, settings['seed'], epoch):
        xb, yb = sharding.gather(mesh, (ds.x_train, ds.y_train), idx)
        state, m = step(state, fixed, stats, xb, yb, key)
        ms.append(m)
      history.append(_epoch_row(settings, epoch, ms, t0))
      checkpoint.save(mngr, epoch, state, settings, history)
      outputs.write_jsonl(rundir.metrics_path(folder), history)
    mngr.wait_until_finished()
    mngr.close()
  return state.params, history


def _epoch_row(settings: dict[str, Any], epoch: int,
               ms: list[dict[str, Any]], t0: float) -> dict[str, Any]:
  losses = np.array([m['loss'] for m in ms], np.float64)
  if not np.all(np.isfinite(losses)):
    raise checks.NonFiniteLossError(
        f"Vertex {settings['vertex']}'s training loss became non-finite in "
        f'epoch {epoch}: lower its optim.lr (or the volume strength). The '
        'last good epoch is kept.')
  return outputs.finite_or_none({
      'vertex': settings['vertex'], 'epoch': epoch,
      'lambda': settings['lambda'],
      'train_loss': float(losses.mean()),
      'train_accuracy': float(np.mean([m['accuracy'] for m in ms])),
      'log_sq_volume': float(np.mean([m['log_sq_volume'] for m in ms])),
      'seconds': round(time.time() - t0, 3)})


def solutions_settings(subs) -> list[dict[str, Any]]:
  """The provenance of each solution (its run and epoch), for the stored
  settings."""
  return [{k: v for k, v in checkpoint.provenance(s.workdir, s.epoch).items()
           if k != 'train_config'} for s in subs]


def augments(s: Subject) -> bool:
  """Whether the run was trained with random crops and flips."""
  return bool(s.train_config['data'].get('augment')) and (
      s.dataset.augmentable)


# ------------------------------------------------------- the complex


def connector_settings(p: Prober, subs: list[Subject]) -> dict[str, Any]:
  """What the connectors are trained from and how: stored with them, and a
  folder holding connectors of other settings is refused."""
  c = p.config.simplex
  return checkpoint.as_json({
      'kind': CONNECTORS_KIND,
      'solutions': solutions_settings(subs),
      'vertices': c.connectors, 'epochs': c.epochs,
      'batch_size': c.batch_size, 'samples': c.samples,
      'optim': c.optim.to_dict(), 'volume': c.volume, 'volume_from': 2,
      'seed': p.config.seed})


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


def complex_connectors(p: Prober, subs: list[Subject]
                       ) -> tuple[list[PyTree], list[dict[str, Any]], str]:
  """The complex's connectors: trained, resumed or restored.

  Returns:
    (the m connectors, the training history, their folder).
  """
  s0 = subs[0]
  folder = connectors_dir(p)
  conns, history = train_vertices(
      s0.model, s0.dataset, [s.params for s in subs], s0.batch_stats,
      folder, connector_settings(p, subs), p.mesh,
      augment=augments(s0))
  return conns, history, folder
