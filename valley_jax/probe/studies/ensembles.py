"""Ensembles of independent runs, ESPRO, one trajectory and the
mode-connecting complex, and their diversity (kind `ensembles`).

The members are the N runs of config.simplex.checkpoints (members.py).
Sets compared, each evaluated example by example on the test set, every
point BN-recalibrated (so the sets differ only in their weights):

* `member i`: each run alone;
* `deep ensemble`: the M = config.ensembles.members runs (mean predicted
  probabilities; Lakshminarayanan et al. 2017);
* `ESPRO` (Benton et al. 2021, "Loss Surface Simplexes for Mode Connecting
  Volumes and Fast Ensembling"): around each of the M runs a simplex grown
  one vertex at a time (config.ensembles.espro_vertices k, each trained
  espro_epochs epochs from the centroid of the simplex so far, with the
  volume term from its first vertex, strength espro_volume; connectors.py),
  and the ensemble of espro_samples points drawn uniformly from every
  simplex (M · S members);
* `SPRO of run 0`: the S points of the first run's simplex alone;
* `trajectory`: M checkpoints of the first run (its last kept epochs);
* `complex samples`: M points drawn from the mode-connecting complex of
  kind `simplex` (its connectors, trained once and shared).

Per set: the ensemble's and the members' test error and NLL, the ensemble
gain, the members' pairwise disagreement, normalised by their error as in
Fort, Hu & Lakshminarayanan 2019, the JS and symmetrised KL divergence
between their predictive distributions (core/diversity.py), and the cosine
between their weights over all parameters, without BatchNorm's, and per
group (BN, classifier, the rest). Compute is stated per set: the forward
passes per test example and the training epochs behind it (an ESPRO vertex
epoch evaluates `samples` points per batch). Intervals: a 95 % bootstrap
over the test examples (core/stats.py); there is one set of runs, so no
interval covers other training seeds. A diversity ranking enters
results['findings'] only when resolved; every ranking, with its interval
and verdict, is in results['ensembles']['diversity_ranking']. On digits the
test set has 360
images (one image = 0.0028 of the error), too few to rank sets whose errors
differ by an image or two: configs/probe_simplex.py:mnist1d measures the
same on mnist1d (1,000 test examples); the findings say which comparisons
are resolved.
"""

from __future__ import annotations

import time
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from valley_jax import checkpoint, checks, plots
from valley_jax.core import diversity, groups, stats, subspace
from valley_jax.errors import InputError
from valley_jax.plots import plt
from valley_jax.probe.prober import Prober, Subject
from valley_jax.probe.studies import common, connectors, members
from valley_jax.probe.study import Study

Config = ml_collections.ConfigDict
PyTree = Any
ESPRO_KIND = 'espro_vertices'
_BOOT = 1000


# ------------------------------------------------------------- checkpoints


def trajectory_epochs(config: Config) -> list[int]:
  """config.ensembles.trajectory_epochs, or the last M kept epochs ≥ 1 of
  the first run (M = members; fewer when it keeps fewer)."""
  e = config.ensembles
  if e.trajectory_epochs:
    return sorted({int(x) for x in e.trajectory_epochs})
  runs = config.simplex.checkpoints
  kept = [x for x in checkpoint.epochs(runs[0]) if x >= 1] if runs else []
  return kept[-n_members(config):]


def n_members(config: Config) -> int:
  """config.ensembles.members, or every run."""
  return config.ensembles.members or len(config.simplex.checkpoints)


def _checkpoints(config: Config) -> list[tuple[str, Any]]:
  runs = config.simplex.checkpoints
  return members.checkpoints(config) + [(runs[0], x)
                                        for x in trajectory_epochs(config)]


def _check(config: Config) -> None:
  members.check_runs(config)
  m, n = n_members(config), len(config.simplex.checkpoints)
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


# ------------------------------------------------------------------- ESPRO


def espro_dir(p: Prober) -> str:
  """config.ensembles.espro_dir, else <connectors_dir>_espro."""
  d = p.config.ensembles.espro_dir
  return d or connectors.connectors_dir(p).rstrip('/') + '_espro'


def espro_settings(p: Prober, s: Subject) -> dict[str, Any]:
  """What one run's ESPRO simplex is trained from and how."""
  e, c = p.config.ensembles, p.config.simplex
  return checkpoint.as_json({
      'kind': ESPRO_KIND, 'solutions': connectors.solutions_settings([s]),
      'vertices': e.espro_vertices, 'epochs': e.espro_epochs,
      'batch_size': c.batch_size, 'samples': c.samples,
      'optim': c.optim.to_dict(), 'volume': e.espro_volume,
      'volume_from': 1, 'seed': p.config.seed})


def espro_simplices(p: Prober, subs: list[Subject]
                    ) -> tuple[list[list[PyTree]], list[dict[str, Any]]]:
  """Each run's simplex [run, vertex 1..k]: trained, resumed or restored."""
  out, history = [], []
  for i, s in enumerate(subs):
    added, rows = connectors.train_vertices(
        s.model, s.dataset, [s.params], s.batch_stats,
        f'{espro_dir(p)}/run{i}', espro_settings(p, s), p.mesh,
        augment=connectors.augments(s), field='config.ensembles.espro_dir')
    out.append([s.params] + added)
    history.append({'run': s.label, 'history': rows})
  return out, history


def draw_on_simplex(key: jax.Array, n_vertices: int, count: int
                    ) -> np.ndarray:
  """[count, n_vertices] weights drawn uniformly from one simplex
  (Dirichlet(1)).

  >>> w = draw_on_simplex(jax.random.key(0), 3, 4)
  >>> w.shape, bool(np.allclose(w.sum(1), 1.0))
  ((4, 3), True)
  """
  return np.asarray(jax.random.dirichlet(key, jnp.ones(n_vertices),
                                         (count,)), np.float64)


# ---------------------------------------------------------------- measures


def weight_cosines(params_list: list[PyTree]) -> dict[str, float]:
  """Mean pairwise cosine of the members' weights: all, without BN, and per
  group (BN scales and biases, the classifier, the rest without BN)."""
  p0 = params_list[0]
  bn = groups.mask(p0, 'BN')
  clf = groups.mask(p0, 'CLF')
  masks = {
      'all': jax.tree.map(lambda _: True, p0),
      'without_bn': jax.tree.map(lambda b: not b, bn),
      'bn': bn, 'classifier': clf,
      'other_without_bn': jax.tree.map(lambda b, c: not (b or c), bn, clf)}
  return {name: diversity.mean_pairwise_cosine(np.stack([
      diversity.masked_flat(p, mk) for p in params_list]))
          for name, mk in masks.items()}


def _boot_mean(col_N: np.ndarray, bounds=None) -> dict[str, Any]:
  b = stats.hierarchical_bootstrap(np.asarray(col_N)[None, :], n_boot=_BOOT,
                                   bounds=bounds)
  b['method'] = b['method'].replace('1 seeds', 'one set')
  return b


def _ratio_boot(num_N, den_N) -> dict[str, Any]:
  x = np.stack([num_N, den_N], -1)[None]

  def stat(e):
    m = e.mean(1)
    return m[:, 0] / np.maximum(m[:, 1], 1e-12)
  b = stats.hierarchical_bootstrap(x, stat, n_boot=_BOOT)
  b['method'] = b['method'].replace('1 seeds', 'one set')
  return b


def set_row(name: str, labels: list[str], probs_MxNxC: np.ndarray,
            y: np.ndarray, params_list: list[PyTree] | None,
            compute: dict[str, Any]) -> dict[str, Any]:
  """One set's measures, each with its interval over the test examples."""
  cols = diversity.per_example(probs_MxNxC, y)
  row = {'set': name, 'members': labels, 'compute': compute,
         **diversity.summary(cols)}
  row['accuracy'] = 1.0 - row['ensemble_error']
  row['member_accuracy'] = 1.0 - row['member_error']
  row['intervals'] = {
      k: _boot_mean(cols[k], (0.0, 1.0) if 'error' in k else None)
      for k in ('ensemble_error', 'ensemble_nll', 'member_error',
                'disagreement', 'js')}
  row['intervals']['gain_error'] = _boot_mean(cols['member_error'] -
                                              cols['ensemble_error'])
  row['intervals']['gain_nll'] = _boot_mean(cols['member_nll'] -
                                            cols['ensemble_nll'])
  if len(probs_MxNxC) > 1 and row['member_error'] > 0:
    row['intervals']['normalised_disagreement'] = _ratio_boot(
        cols['disagreement'], cols['member_error'])
  row['cosine'] = (weight_cosines(params_list) if params_list and
                   len(params_list) > 1 else None)
  row['_columns'] = cols
  return row


def _difference(a: dict[str, Any], b: dict[str, Any], key: str
                ) -> dict[str, Any]:
  """b[key] − a[key] per example, its mean and interval."""
  return _boot_mean(b['_columns'][key] - a['_columns'][key])


def _diversity_gap(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
  """a's normalised disagreement − b's, with its interval."""
  x = np.stack([a['_columns']['disagreement'], a['_columns']['member_error'],
                b['_columns']['disagreement'], b['_columns']['member_error']],
               -1)[None]

  def stat(e):
    m = e.mean(1)
    return (m[:, 0] / np.maximum(m[:, 1], 1e-12) -
            m[:, 2] / np.maximum(m[:, 3], 1e-12))
  out = stats.hierarchical_bootstrap(x, stat, n_boot=_BOOT)
  out['method'] = out['method'].replace('1 seeds', 'one set')
  return out


def findings(rows: dict[str, dict[str, Any]]
             ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
  """The claims the sets test, each with its verdict.

  Returns:
    (the findings: the deep ensemble's gain, ESPRO against the deep
    ensemble, and the diversity rankings that are resolved; every diversity
    ranking with its interval and verdict, resolved or not). A ranking
    that the data do not resolve is not reported as a finding.
  """
  deep, espro = rows['deep ensemble'], rows['ESPRO']
  traj, cplx = rows['trajectory'], rows['complex samples']
  out = [
      stats.finding('the deep ensemble has a lower test error than its '
                    'members', deep['intervals']['gain_error'],
                    statistic='members\' mean error − ensemble error'),
      stats.finding('ESPRO has a lower test NLL than the deep ensemble of '
                    'the same runs', _difference(espro, deep, 'ensemble_nll'),
                    statistic='deep ensemble NLL − ESPRO NLL'),
      stats.finding('ESPRO has a lower test error than the deep ensemble '
                    'of the same runs',
                    _difference(espro, deep, 'ensemble_error'),
                    statistic='deep ensemble error − ESPRO error')]
  ranking = []
  for other in (traj, cplx, espro):
    if other['member_error'] > 0 and deep['member_error'] > 0:
      ranking.append(stats.finding(
          f"independent runs are more diverse than {other['set']}",
          _diversity_gap(deep, other),
          statistic='normalised disagreement (disagreement / members\' '
          f"error): independent − {other['set']}"))
  return out + [f for f in ranking if f['resolved']], ranking


# ------------------------------------------------------------------- kind


def ensembles(p: Prober, _) -> dict[str, Any]:
  """Every set of the module doc, its measures and the findings.

  Args:
    p: the Prober.

  Returns:
    'ensembles': one row per set; 'findings'; 'curves' is empty and
    'err_table' False.
  """
  t0 = time.time()
  e = p.config.ensembles
  subs = members.solutions(p)
  m = n_members(p.config)
  s0 = subs[0]
  pred = members.Predictor(s0)
  y = pred.labels
  run_epochs = [int(s.train_config['train']['epochs']) for s in subs]
  probs = [pred.probs(s.params, s.batch_stats) for s in subs]
  rows: dict[str, dict[str, Any]] = {}
  for i, s in enumerate(subs):
    rows[f'member {i}'] = set_row(
        s.label, [s.label], probs[i][None], y, None,
        {'forward_passes': 1, 'train_epochs': run_epochs[i]})
  rows['deep ensemble'] = set_row(
      'deep ensemble', [s.label for s in subs[:m]], np.stack(probs[:m]), y,
      [s.params for s in subs[:m]],
      {'forward_passes': m, 'train_epochs': sum(run_epochs[:m])})
  t1 = time.time()
  simplices, espro_history = espro_simplices(p, subs[:m])
  t_espro = time.time() - t1
  key = jax.random.fold_in(p.root, 0xE5)
  k, ns = e.espro_vertices, e.espro_samples
  espro_probs, espro_params = [], []
  for i, verts in enumerate(simplices):
    w = draw_on_simplex(jax.random.fold_in(key, i), k + 1, ns)
    stacked = subspace.stack(verts)
    for row in w:
      params = subspace.combine(stacked, jnp.asarray(row, jnp.float32))
      espro_params.append(params)
      espro_probs.append(pred.probs(params, s0.batch_stats))
  vertex_epochs = k * e.espro_epochs * p.config.simplex.samples
  rows['ESPRO'] = set_row(
      'ESPRO', [f'{subs[i].label} simplex, sample {j + 1}' for i in range(m)
                for j in range(ns)], np.stack(espro_probs), y, espro_params,
      {'forward_passes': m * ns,
       'train_epochs': sum(run_epochs[:m]) + m * vertex_epochs,
       'note': f'{k} vertices × {e.espro_epochs} epochs × '
               f'{p.config.simplex.samples} samples per step, per run'})
  rows['SPRO of run 0'] = set_row(
      f'SPRO of {s0.label}', [f'sample {j + 1}' for j in range(ns)],
      np.stack(espro_probs[:ns]), y, espro_params[:ns],
      {'forward_passes': ns, 'train_epochs': run_epochs[0] + vertex_epochs})
  traj = [p.subject(s0.workdir, x, f'{s0.label}@{x}')
          for x in trajectory_epochs(p.config)]
  rows['trajectory'] = set_row(
      'trajectory', [t.label for t in traj],
      np.stack([pred.probs(t.params, t.batch_stats) for t in traj]), y,
      [t.params for t in traj],
      {'forward_passes': len(traj), 'train_epochs': run_epochs[0]})
  conns, _, folder = connectors.complex_connectors(p, subs)
  w_MxV = subspace.sample_complex(key, len(subs), len(conns), m, offset=1000)
  stacked = subspace.stack([s.params for s in subs] + conns)
  samples = [subspace.combine(stacked, jnp.asarray(w, jnp.float32))
             for w in w_MxV]
  rows['complex samples'] = set_row(
      'complex samples', [f'sample {i + 1}' for i in range(m)],
      np.stack([pred.probs(w, s0.batch_stats) for w in samples]), y, samples,
      {'forward_passes': m, 'train_epochs': sum(run_epochs) + len(conns) *
       p.config.simplex.epochs * p.config.simplex.samples})
  found, ranking = findings(rows)
  for r in rows.values():
    r.pop('_columns')
  p.bar.update(1)
  return {'curves': [], 'err_table': False, 'findings': found,
          'ensembles': {
              'members': m, 'sets': list(rows.values()),
              'diversity_ranking': ranking,
              'n_test': int(len(y)),
              'resolution_note': f'one test example = {1 / len(y):.4f} of '
                                 'the error',
              'espro': {'folder': espro_dir(p), 'vertices': k,
                        'samples_per_simplex': ns,
                        'fingerprints': [connectors.fingerprint(v[1:])
                                         for v in simplices],
                        'history': espro_history},
              'complex': {'folder': folder,
                          'fingerprint': connectors.fingerprint(conns),
                          'samples': w_MxV.tolist()},
              'seconds': {'espro_training': round(t_espro, 1),
                          'total': round(time.time() - t0, 1)}}}


# ------------------------------------------------------------------ figure


def _errbar(ax, x, rows, key, color, label, width):
  mean = [r['intervals'][key]['mean'] if key in r['intervals'] else np.nan
          for r in rows]
  lo = [max(r['intervals'][key]['mean'] - r['intervals'][key]['ci'][0], 0)
        if key in r['intervals'] else 0 for r in rows]
  hi = [max(r['intervals'][key]['ci'][1] - r['intervals'][key]['mean'], 0)
        if key in r['intervals'] else 0 for r in rows]
  ax.bar(x, mean, width, yerr=[lo, hi], color=color, label=label,
         capsize=2, error_kw={'lw': 0.8})


def ensembles_figure(results: dict[str, Any], folder: str) -> list[str]:
  """Per set: the ensemble's and the members' test error, the ensemble's
  NLL, the normalised disagreement, and the weight cosine with and without
  BN, each with its 95 % interval over the test examples.

  Args:
    results: an `ensembles` results.json.
    folder: where figure.png (and the other formats) go.

  Returns:
    The paths written.
  """
  e = results['ensembles']
  rows = [r for r in e['sets'] if len(r['members']) > 1]
  singles = [r for r in e['sets'] if len(r['members']) == 1]
  x = np.arange(len(rows))
  fig, axes = plt.subplots(2, 2, figsize=(13.0, 8.4))
  ax = axes[0, 0]
  _errbar(ax, x - 0.2, rows, 'member_error', 'C0', 'members (mean)', 0.4)
  _errbar(ax, x + 0.2, rows, 'ensemble_error', 'C1', 'ensemble', 0.4)
  for r in singles:
    ax.axhline(r['ensemble_error'], color='0.5', lw=0.6, ls=':')
  ax.plot([], [], color='0.5', lw=0.6, ls=':', label='each run alone')
  ax.set_ylabel('test error')
  ax.set_ylim(bottom=0.0)
  ax.legend(fontsize=7)
  ax.set_title('test error (the runs alone: dotted)', fontsize=9)
  ax = axes[0, 1]
  _errbar(ax, x, rows, 'ensemble_nll', 'C2', 'ensemble', 0.6)
  ax.set_ylabel('test NLL of the ensemble')
  ax.set_ylim(bottom=0.0)
  ax.set_title('test NLL', fontsize=9)
  ax = axes[1, 0]
  _errbar(ax, x, rows, 'normalised_disagreement', 'C3', None, 0.6)
  ax.set_ylabel('disagreement / members\' error')
  ax.set_ylim(bottom=0.0)
  ax.set_title('diversity in function space (Fort, Hu & Lakshminarayanan '
               '2019)', fontsize=9)
  ax = axes[1, 1]
  for k, (key, label) in enumerate((('all', 'all parameters'),
                                    ('without_bn', 'without BN'))):
    vals = [np.nan if r['cosine'] is None else r['cosine'][key]
            for r in rows]
    ax.bar(x + (k - 0.5) * 0.4, plots.clipped(vals), 0.4, color=f'C{k + 4}',
           label=label)
  ax.set_ylabel('mean weight cosine over pairs')
  ax.set_ylim(0.0, 1.05)
  ax.legend(fontsize=7)
  ax.set_title('weight cosine', fontsize=9)
  for ax in axes.ravel():
    ax.set_xticks(x, [f"{r['set']}\n{len(r['members'])} members,\n"
                      f"{r['compute']['forward_passes']} passes"
                      for r in rows], fontsize=7)
    ax.grid(alpha=0.3, axis='y')
  fig.suptitle(f"ensembles: {results['model']} on {results['dataset']}, "
               f"{e['n_test']} test examples, BN recalibrated; bars: 95% "
               'bootstrap intervals over the test examples', fontsize=10)
  fig.tight_layout()
  return plots.save(fig, folder, 'figure')


# ------------------------------------------------------------------ config


def _config() -> Config:
  return Config(dict(
      members=0,  # 0: as many as runs.
      trajectory_epochs=(),  # (): the last kept epochs.
      espro_vertices=2,  # k vertices added to each run: a k-simplex.
      espro_epochs=5,  # Per vertex.
      # The volume strength before normalisation (the authors' ensemble
      # script defaults to 1e-6; this is their complex's 0.1).
      espro_volume=0.1,
      espro_samples=5,  # Points drawn from each run's simplex.
      espro_dir=''))  # '': <config.simplex.connectors_dir>_espro.


ENSEMBLES = Study(
    'ensembles', ensembles, _config, figure=ensembles_figure,
    fields=(checks.count('ensembles.members', 0,
                         why='0: one member per run of config.simplex'),
            checks.count('ensembles.trajectory_epochs'),
            checks.count('ensembles.espro_vertices'),
            checks.count('ensembles.espro_epochs', 0),
            checks.count('ensembles.espro_samples'),
            checks.Field('ensembles.espro_volume', float, lo=0)),
    checkpoints=_checkpoints, multi_run=True, check_checkpoints=_check)
