"""Studies that compare training runs (Fig. 7-9 of the paper).

Kinds: bn_init (Fig. 7), hparams (Fig. 9) and interpolate (Fig. 8). Each
measures the checkpoints named in its own config block rather than
config.checkpoint. Interpolation without BN recalibration keeps θA's batch
statistics.
"""

from __future__ import annotations

from typing import Any

import flax
import jax
import ml_collections
import numpy as np

from valley_jax import checks, plots
from valley_jax.core import directions, groups, normalize, stats, tree
from valley_jax.errors import InputError
from valley_jax.plots import plt
from valley_jax.probe.prober import Prober
from valley_jax.probe.studies import align, common
from valley_jax.probe.study import Study

Config = ml_collections.ConfigDict


# -------------------------------------------------------------------- figures


def histograms_figure(results: dict[str, Any], folder: str) -> list[str]:
  """Fig. 7 (right): one BN layer's weights at init and at convergence."""
  hs = results['histograms']
  fig, axes = plt.subplots(1, len(hs), figsize=(3.2 * len(hs), 2.8),
                           squeeze=False)
  for ax, h in zip(axes[0], hs):
    ax.hist(h['init'], bins=30, alpha=0.6, label='init')
    ax.hist(h['final'], bins=30, alpha=0.6, label='converged')
    ax.set_title(f"{h['label']}: {h['layer']}", fontsize=9)
    ax.legend(fontsize=7)
  return (plots.save(fig, folder, 'figure_hist') +
          plots.curve_panels(results, folder))


def interpolation_figure(results: dict[str, Any], folder: str) -> list[str]:
  """Fig. 8: the curve, group mean/std and sign consistency ratios."""
  st = results['statistics']
  names = list(st['groups'])
  fig, axes = plt.subplots(1, 4, figsize=(15, 3.2))
  c = results['curves'][0]
  axes[0].plot(c['lambdas'], plots.clipped(c['error']), 'k-', label='θB')
  for aligned in results['curves'][1:]:  # config.interpolate.align.
    axes[0].plot(aligned['lambdas'], plots.clipped(aligned['error']),
                 'tab:red', label='π(θB), units aligned to θA')
    axes[0].legend(fontsize=7)
  axes[0].set_xlabel('λ: (1−λ)θA + λθB')
  axes[0].set_ylabel('test error')
  x = np.arange(len(names))
  for ax, key in zip(axes[1:3], ('mean', 'std')):
    # Values on the bars: a group whose value is 0 (CLF bias std of a
    # zero-initialised bias, say) would otherwise be an invisible bar.
    for dx, side, label in ((-0.2, 'a', 'θA'), (0.2, 'b', 'θB')):
      bars = ax.bar(x + dx, [st['groups'][g][side][key] for g in names], 0.4,
                    label=label)
      ax.bar_label(bars, fmt='%.2g', fontsize=5, rotation=90, padding=1)
    ax.axhline(0.0, color='black', lw=0.6)
    lo, hi = ax.get_ylim()
    ax.set_ylim(lo, hi + 0.15 * (hi - lo))  # Room for the values on top.
    ax.set_xticks(x, names, rotation=45, fontsize=7)
    ax.set_title(f'parameter {key}')
    ax.legend(fontsize=7)
  ax = axes[3]
  ax.bar(x - 0.2, [st['groups'][g]['ssr_a'] for g in names], 0.4,
         label='SSR(θA, θB−θA)')
  ax.bar(x + 0.2, [st['groups'][g]['ssr_b'] for g in names], 0.4,
         label='SSR(θB, θB−θA)')
  ax.set_xticks(x, names, rotation=45, fontsize=7)
  ax.set_title('sign consistency ratio')
  ax.set_ylim(0.0, 1.0)  # A ratio; the legend sits above the bars.
  ax.legend(fontsize=7, loc='upper right')
  prov = results.get('provenance') or []
  ends = ' → '.join(f"{p.get('workdir')} @ {p.get('epoch')}" for p in prov)
  fig.suptitle(f"interpolate: {results['model']} on {results['dataset']}: "
               f"θA → θB = {ends}", fontsize=9)
  fig.tight_layout()
  return plots.save(fig, folder, 'figure')


def _last_of_each(kind: str):
  """checkpoints(config) of a kind that lists runs: their last epochs, each
  run over config.train_seeds training seeds (common.replicas)."""
  def checkpoints(config: Config) -> list[tuple[str, Any]]:
    return [(r, 'last') for w in config[kind].checkpoints
            for r in common.replicas(w, common.train_seeds(config))]
  return checkpoints


def _check_list(kind: str):
  """check_checkpoints(config) of a kind that lists runs."""
  def check(config: Config) -> None:
    c, where = config[kind], f'config.{kind}'
    if not c.checkpoints:
      raise InputError(f'{where}.checkpoints is empty: give the workdirs of '
                       'the runs to compare.')
    if c.labels and len(c.labels) != len(c.checkpoints):
      raise InputError(f'{where}.labels must match {where}.checkpoints.')
    for w in c.checkpoints:
      for r in common.replicas(w, common.train_seeds(config)):
        common.check_checkpoint(r, 'last', f'{where}.checkpoints')
  return check


def _runs_config(**more) -> Config:
  return Config(dict(checkpoints=(), labels=(), **more))


# ------------------------------------------------------------------- bn_init


def bn_init(p: Prober, _) -> dict[str, Any]:
  """Fig. 7: runs with different BN inits along ε ∈ {0,1}, NS and filter NS.

  Args:
    p: the Prober.

  Returns:
    Per run, one curve per normalisation, and the initial and final BN
    weights of one layer (for the histograms).
  """
  c = p.config.bn_init
  labels = c.labels or c.checkpoints
  curves, hists = [], []
  for w, label in zip(c.checkpoints, labels):
    runs = common.replicas(w, common.train_seeds(p.config))
    subjects = [p.subject(r, label=label) for r in runs]
    for norm in c.normalizations:
      curves.append(common.over_runs([
          common.noise_line(p, s, c.noise, False, f'{label}, {norm}',
                            normalization=norm, label=f'{label} {norm}')
          for s in subjects], runs))
    s = subjects[0]
    layer = _bn_layer(s.params, c.layer)
    hists.append({'label': label, 'layer': layer,
                  'init': _leaf(s.theta0, layer), 'final': _leaf(s.params,
                                                                 layer)})
  return {'curves': curves, 'histograms': hists,
          'findings': _bn_init_findings(c, curves)}


def _bn_init_findings(c: Config, curves) -> list[dict[str, Any]]:
  """Fig. 7's claims per normalisation: each run's halves differ along the
  noise, and the first run's err+ − err− differs from the last run's (the
  paper: BN weights initialised to ones give an asymmetric valley, small
  ones a nearly symmetric one), paired by training seed and test example."""
  out = []
  norms = list(c.normalizations)
  for cv in curves:
    out.append(common.finding(f"{cv['label']}: halves differ", cv['lambdas'],
                              [cv], common.half_diff, expect='nonzero',
                              statistic='err+ − err−'))
  for j, norm in enumerate(norms):
    mine = curves[j::len(norms)]
    if len(mine) > 1:
      a, b = mine[0], mine[-1]
      out.append(common.finding(
          f"{norm}: {a['label']} and {b['label']} differ in asymmetry",
          a['lambdas'], [a, b],
          lambda x, y: common.half_diff(x) - common.half_diff(y),
          expect='nonzero',
          statistic=f"(err+ − err−) of {a['label']} − that of {b['label']}"))
  return out


def _bn_layer(params, name: str) -> str:
  bns = sorted({k.rsplit('/', 1)[0] for k in _flat(params)
                if k.rsplit('/', 1)[0].split('/')[-1].startswith('bn')})
  if not bns:
    raise InputError('bn_init needs models with BatchNorm.')
  if name and name not in bns:
    raise InputError(f'config.bn_init.layer={name!r} not found; BN layers: '
                     f'{bns}.')
  return name or bns[0]


def _flat(params) -> dict[str, Any]:
  """'module/path/leaf' -> array."""
  return flax.traverse_util.flatten_dict(params, sep='/')


def _leaf(params, layer: str) -> list[float]:
  return np.asarray(_flat(params)[f'{layer}/scale']).tolist()


def _bn_init_validate(config: Config) -> None:
  directions.check_noise(config.bn_init.noise)
  for n in config.bn_init.normalizations:
    normalize.check_normalization(n)


def _bn_init_config() -> Config:
  return _runs_config(noise='binary', normalizations=('ns', 'filter'),
                      layer='')


BN_INIT = Study(
    'bn_init', bn_init, _bn_init_config,
    validate=_bn_init_validate, figure=histograms_figure,
    checkpoints=_last_of_each('bn_init'), multi_run=True,
    check_checkpoints=_check_list('bn_init'))


# ------------------------------------------------------------------- hparams


def hparams(p: Prober, _) -> dict[str, Any]:
  """Fig. 9: runs with other LR/BS/WD, G(0,1) plain and sign-consistent.

  Args:
    p: the Prober.

  Returns:
    Two curves per run.
  """
  c = p.config.hparams
  curves = []
  for w, label in zip(c.checkpoints, c.labels or c.checkpoints):
    runs = common.replicas(w, common.train_seeds(p.config))
    subjects = [p.subject(r, label=label) for r in runs]
    curves += [common.over_runs([
        common.noise_line(p, s, c.noise, sc, label, scale=c.scale)
        for s in subjects], runs) for sc in (False, True)]
  findings = [common.finding(
      f"{cv['panel']}: {cv['label']} " + (
          'positive side flatter' if cv['sign_consistent'] else
          'halves differ'), cv['lambdas'], [cv], common.half_diff,
      expect='negative' if cv['sign_consistent'] else 'nonzero',
      statistic='err+ − err−') for cv in curves]
  return {'curves': curves, 'findings': findings}


def _hparams_config() -> Config:
  return _runs_config(noise='gaussian', scale=1.0)


def _hparams_validate(config: Config) -> None:
  directions.check_noise(config.hparams.noise)


HPARAMS = Study(
    'hparams', hparams, _hparams_config, validate=_hparams_validate,
    fields=(checks.positive('hparams.scale', why=common.SCALE_WHY),),
    checkpoints=_last_of_each('hparams'), multi_run=True,
    check_checkpoints=_check_list('hparams'))


# --------------------------------------------------------------- interpolate


def interpolate(p: Prober, _) -> dict[str, Any]:
  """Fig. 8: (1−λ)θA + λθB, group statistics and sign consistency.

  Args:
    p: the Prober.

  Returns:
    The interpolation curve and pair_statistics of θA and θB; with
    config.interpolate.align, also the line to the aligned θB and
    'alignment' (align.compare_line).
  """
  c = p.config.interpolate
  n = common.train_seeds(p.config)
  pairs = list(zip(common.replicas(c.checkpoint_a, n),
                   common.replicas(c.checkpoint_b, n)))
  lams = np.linspace(c.lam_min, c.lam_max, c.num_points)
  curves, stats_ab, subjects = [], [], []
  for wa, wb in pairs:
    a = p.subject(wa, c.epoch_a, 'θA')
    b = p.subject(wb, c.epoch_b, 'θB')
    if jax.tree.structure(a.params) != jax.tree.structure(b.params):
      raise InputError('interpolate needs checkpoints with the same '
                       'parameters.')
    eps = directions.difference(a.params, b.params)
    curves.append(common.line(
        p, a, 'θA → θB', 'interpolation', lambda _, e=eps: e, lams=lams,
        **common.curve_meta('difference', False, None, 'none')))
    stats_ab.append(pair_statistics(a.params, b.params))
    subjects.append((a, b))
  names = [f'{wa} → {wb}' for wa, wb in pairs]
  curve = common.over_runs(curves, names)
  out = {'curves': [curve], 'statistics': stats_ab[0],
         'findings': _barrier_findings(curve)}
  if len(pairs) > 1:
    out['statistics_per_seed'] = stats_ab
  if c.align:  # θB's units permuted to θA's (core/permute.py), every pair.
    more = [align.compare_line(p, a, b, naive, lams)
            for (a, b), naive in zip(subjects, curves)]
    out['curves'].append(common.over_runs([m['curve'] for m in more], names))
    out['alignment'] = more[0]['alignment']
    if len(pairs) > 1:
      out['alignment_per_seed'] = [m['alignment'] for m in more]
  return out


def barrier(lams, error_SxNxP) -> np.ndarray:
  """Per seed, the error barrier on the segment: the largest mean error at
  0 < λ < 1 minus the larger of the two ends' (λ = 0 and 1); [S].

  Args:
    lams: the λ of each point (must hold 0 and 1 and a point between).
    error_SxNxP: the error per seed, example and point.

  Returns:
    The barrier of each seed.
  """
  lams = np.asarray(lams)
  e_SxP = np.asarray(error_SxNxP, np.float64).mean(1)
  inner = (lams > 0) & (lams < 1)
  ends = [int(np.argmin(np.abs(lams - x))) for x in (0.0, 1.0)]
  return e_SxP[:, inner].max(-1) - e_SxP[:, ends].max(-1)


def _barrier_findings(curve: dict[str, Any]) -> list[dict[str, Any]]:
  """Fig. 8's segment: a barrier between θA and θB (> 0), by the
  hierarchical bootstrap over training seeds and test examples."""
  e, lams = curve.get(common.PER_EXAMPLE), np.asarray(curve['lambdas'])
  if e is None or not ((lams > 0) & (lams < 1)).any() or not (
      np.isclose(lams, 0).any() and np.isclose(lams, 1).any()):
    return []
  b = stats.hierarchical_bootstrap(e, lambda x: barrier(lams, x),
                                   bounds=(-1.0, 1.0))
  return [stats.finding('θA → θB: an error barrier between the two '
                        'solutions', b, expect='positive',
                        statistic='max error at 0 < λ < 1 − max(error at '
                        'λ = 0, 1)')]


def pair_statistics(pa, pb) -> dict[str, Any]:
  """Per statistics group: mean/std of θA and θB, SSR of each with θB−θA.

  Args:
    pa, pb: the parameters θA and θB.

  Returns:
    {'groups': {group: statistics}, 'ssr_ab': SSR of θA with θB}.
  """
  eps = directions.difference(pa, pb)
  out = {}
  for g in (*groups.STATS_GROUPS, 'ALL'):
    m = (groups.stats_mask(pa, g) if g != 'ALL' else groups.mask(pa, 'ALL'))
    if not tree.size(pa, m):
      continue
    (ma, sa), (mb, sb) = tree.mean_std(pa, m), tree.mean_std(pb, m)
    out[g] = {'a': {'mean': ma, 'std': sa}, 'b': {'mean': mb, 'std': sb},
              'ssr_a': tree.sign_consistency_ratio(pa, eps, m),
              'ssr_b': tree.sign_consistency_ratio(pb, eps, m)}
  return {'groups': out,
          'ssr_ab': tree.sign_consistency_ratio(pa, pb)}


def _interpolate_config() -> Config:
  return Config(dict(checkpoint_a='', checkpoint_b='', epoch_a='last',
                     epoch_b='last', lam_min=-1.0, lam_max=2.0,
                     num_points=31,
                     # Also the line to θB with its units aligned to θA's
                     # (weight matching, Git Re-Basin): 'alignment' holds
                     # SSR and barrier before and after.
                     align=False))


def _interpolate_validate(config: Config) -> None:
  i = config.interpolate
  common.check_range(i.lam_min, i.lam_max, i.num_points, 'config.interpolate')


def _pair(config: Config) -> list[tuple[str, Any]]:
  c, n = config.interpolate, common.train_seeds(config)
  return [(w, e) for wa, wb in zip(common.replicas(c.checkpoint_a, n),
                                   common.replicas(c.checkpoint_b, n))
          for w, e in ((wa, c.epoch_a), (wb, c.epoch_b))]


def _check_pair(config: Config) -> None:
  c, n = config.interpolate, common.train_seeds(config)
  for wa, wb in zip(common.replicas(c.checkpoint_a, n),
                    common.replicas(c.checkpoint_b, n)):
    common.check_checkpoint(wa, c.epoch_a, 'config.interpolate.checkpoint_a')
    common.check_checkpoint(wb, c.epoch_b, 'config.interpolate.checkpoint_b')
  a = common.model_signature(c.checkpoint_a)
  b = common.model_signature(c.checkpoint_b)
  if a != b:
    raise InputError('interpolate needs two checkpoints of the same model and '
                     f'dataset; got {a} and {b}.')


INTERPOLATE = Study(
    'interpolate', interpolate, _interpolate_config,
    validate=_interpolate_validate, figure=interpolation_figure,
    fields=(checks.count('interpolate.epoch_a', 0, also=('last',)),
            checks.count('interpolate.epoch_b', 0, also=('last',)),
            checks.finite('interpolate.lam_min'),
            checks.finite('interpolate.lam_max'),
            checks.count('interpolate.num_points')),
    checkpoints=_pair, multi_run=True, check_checkpoints=_check_pair)

# This family's studies, in the order of the registry (probe/registry.py).
STUDIES = (BN_INIT, HPARAMS, INTERPOLATE,)
