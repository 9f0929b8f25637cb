"""The asymmetric valley of one checkpoint (Fig. 3-6 of the paper).

Kinds: noise_types (Fig. 3), sign_ratio (Fig. 4), special (Fig. 5) and
groups (Fig. 6). Each sweeps config.checkpoint along directions built by
common.make_direction and reports, per curve, the mean error of each half.
"""

from __future__ import annotations

import functools
from typing import Any

import matplotlib
import ml_collections
import numpy as np

from valley_jax import checks, plots
from valley_jax.core import directions, groups, tree
from valley_jax.errors import InputError
from valley_jax.plots import plt
from valley_jax.probe.prober import Prober, Subject
from valley_jax.probe.studies import common
from valley_jax.probe.study import Study

Config = ml_collections.ConfigDict


# -------------------------------------------------------------------- figures


def sign_ratio_figure(results: dict[str, Any], folder: str) -> list[str]:
  """Fig. 4: mean error of the positive and negative halves against r, with
  their 95 % intervals as error bars; then every curve, coloured by r."""
  s = results['summary']
  fig, ax = plt.subplots(figsize=(4.4, 3.4))
  for key, marker, label in (('positive', 'o-', 'λ ∈ [0, 1]'),
                             ('negative', 's-', 'λ ∈ [-1, 0]')):
    y = plots.clipped(s[key])
    yerr = _yerr(y, s.get(f'{key}_ci'))
    ax.errorbar(s['ratios'], y, yerr=yerr, fmt=marker, capsize=2, ms=4,
                label=label)
  # r is the fraction of elements given the sign of θf; the others agree by
  # chance half the time, so the measured sign consistency is (1 + r)/2.
  ax.set_xlabel('fraction r of elements given sign(θf)')
  top = ax.secondary_xaxis('top', functions=(lambda r: (1 + r) / 2,
                                             lambda q: 2 * q - 1))
  top.set_xlabel('sign consistency with θf, (1 + r)/2', fontsize=8)
  ax.set_ylabel('mean test error of the half')
  ax.set_ylim(0.0, None)
  ax.legend(fontsize=8)
  ax.grid(alpha=0.3)
  ax.set_title(_ratio_title(results, s) + '\nbars: ' +
               plots.band_note(results['curves']).replace('\nbands: ', ''),
               fontsize=7)
  fig.tight_layout()
  return (plots.save(fig, folder, 'figure_ratio') +
          _ratio_curves(results, folder))


def _yerr(y, ci) -> np.ndarray | None:
  """Error bar lengths [2, n] from [low, high] intervals (None: no bars)."""
  if not ci or any(c is None for c in ci):
    return None
  lo_hi = np.asarray(ci, np.float64)
  return np.abs(np.stack([y - lo_hi[:, 0], lo_hi[:, 1] - y]))


def _ratio_title(results: dict[str, Any], s: dict[str, Any]) -> str:
  noise = directions.NOISE_LABELS.get(s.get('noise'), s.get('noise', 'ε'))
  return (f"sign_ratio: ε ~ {noise}, a fraction r given sign(θf), s = "
          f"{s.get('scale', 1.0):g}; {results['model']} on "
          f"{results['dataset']}{plots.checkpoint_label(results)}")


def _ratio_curves(results: dict[str, Any], folder: str) -> list[str]:
  """Every curve of sign_ratio, error and loss against λ, coloured by r on a
  sequential colour map (a colour bar reads r), with its band."""
  s, curves = results['summary'], results['curves']
  ratios = [c['ratio'] for c in curves]
  norm = matplotlib.colors.Normalize(min(ratios), max(ratios) or 1.0)
  cmap = plt.get_cmap('viridis')
  fig, axes = plt.subplots(1, 2, figsize=(8.4, 3.4))
  for ax, metric in zip(axes, ('error', 'loss')):
    for c in curves:
      color = cmap(norm(c['ratio']))
      lams = np.asarray(c['lambdas'])
      ax.plot(lams, plots.clipped(c[metric]), color=color, lw=1.3)
      b = plots.band(c, metric)
      if b is not None:
        ax.fill_between(lams, b[0], b[1], color=color, alpha=0.15, lw=0)
    ax.axvline(0.0, color='grey', lw=0.5)
    ax.set_xlabel('λ')
    ax.set_ylabel('test error' if metric == 'error' else 'CE loss')
    ax.set_ylim(0.0, None)
    ax.grid(alpha=0.3)
  bar = fig.colorbar(matplotlib.cm.ScalarMappable(norm, cmap), ax=axes,
                     fraction=0.04)
  bar.set_label('r: fraction given sign(θf)')
  fig.suptitle(_ratio_title(results, s) + plots.band_note(curves),
               fontsize=8)
  return plots.save(fig, folder, 'figure')


def noise_types_figure(results: dict[str, Any], folder: str) -> list[str]:
  """Fig. 3 in the paper's layout: one row per noise, one column per scale
  s; test error against λ, plain ε dashed and |ε|·sign(θ) solid, each with
  its 95 % band.

  Every panel has its own y-limits from 0 to at least plots.ERROR_FLOOR (a
  shared axis flattened the s = 0.2 column); one legend for the figure; the
  title names the run.
  """
  curves = results['curves']
  noises = list(dict.fromkeys(c['direction'] for c in curves))
  scales = sorted({c['scale'] for c in curves})
  fig, axes = plt.subplots(len(noises), len(scales), squeeze=False,
                           figsize=(2.5 * len(scales) + 0.6,
                                    1.75 * len(noises) + 0.8),
                           sharex=True)
  styles = {False: ('--', 'tab:blue', 'plain ε'),
            True: ('-', 'tab:red', '|ε|·sign(θ)')}
  for i, noise in enumerate(noises):
    row = [c for c in curves if c['direction'] == noise]
    for j, sc in enumerate(scales):
      ax = axes[i, j]
      tops = []
      for c in row:
        if c['scale'] != sc:
          continue
        style, color, label = styles[bool(c['sign_consistent'])]
        lams = np.asarray(c['lambdas'])
        y = plots.clipped(c['error'])
        ax.plot(lams, y, style, color=color, lw=1.4, label=label)
        b = plots.band(c, 'error')
        if b is not None:
          ax.fill_between(lams, b[0], b[1], color=color, alpha=0.2, lw=0)
          y = np.concatenate([y, b[1]])
        tops.extend(y)
      ax.set_ylim(0.0, min(plots.error_top(tops), 1.0))
      ax.axvline(0.0, color='grey', lw=0.5)
      ax.grid(alpha=0.3)
      ax.tick_params(labelsize=7)
      if i == 0:
        ax.set_title(f's = {sc:g}', fontsize=9)
      if j == 0:
        ax.set_ylabel(f'{directions.NOISE_LABELS.get(noise, noise)}\n'
                      'test error', fontsize=8)
      if i == len(noises) - 1:
        ax.set_xlabel('λ', fontsize=8)
  handles, labels = axes[0, 0].get_legend_handles_labels()
  fig.legend(handles, labels, loc='upper right', fontsize=8, ncol=2)
  fig.suptitle(f"noise_types: {results['model']} on {results['dataset']}"
               f"{plots.checkpoint_label(results)}; rows: noise, columns: "
               f"scale s; each panel's error axis from 0 to ≥ "
               f"{plots.ERROR_FLOOR:g}{plots.band_note(curves)}",
               fontsize=8, x=0.02, ha='left')
  fig.tight_layout(rect=(0, 0, 1, 0.965))
  return plots.save(fig, folder, 'figure')


# --------------------------------------------------------------- noise_types


def noise_types(p: Prober, s: Subject) -> dict[str, Any]:
  """Fig. 3: seven noises, plain and sign-consistent, for every scale s.

  Args:
    p: the Prober.
    s: config.checkpoint.

  Returns:
    The curves and the figure layout (one column per noise).
  """
  c = p.config.noise_types
  curves = [common.noise_line(p, s, n, sc,
                              f'{directions.NOISE_LABELS[n]}, s={sc_}',
                              scale=sc_)
            for sc_ in c.scales for n in c.noises for sc in (False, True)]
  return {'curves': curves, 'layout': {'ncols': len(c.noises),
                                       'metrics': ['error']},
          'findings': _noise_types_findings(c, curves),
          'digest': _noise_types_digest(c, curves)}


# Noises whose mean is not zero: the paper sees a slight asymmetry of their
# plain curves at s = 0.2 in networks with BN.
_NOT_CENTRED = ('gaussian_mean1', 'uniform01', 'binary', 'ones')
# The rows of the README's table that noise_types gives (at s = 1).
_NOISE_DIGEST = ('gaussian', 'ones')


def _by_key(curves) -> dict[tuple[str, float, bool], dict[str, Any]]:
  return {(c['direction'], c['scale'], bool(c['sign_consistent'])): c
          for c in curves}


def _main_scale(scales) -> float:
  """The scale of the headline findings: the one nearest s = 1."""
  return min(scales, key=lambda x: abs(x - 1.0))


def _noise_types_findings(c: Config, curves) -> list[dict[str, Any]]:
  """Fig. 3's claims, at the scale nearest 1 (and the smallest scale for
  the non-centred noises' plain curves): sign-consistent noise makes the
  positive side flatter (err+ − err− < 0); plain noise, whose valleys the
  paper finds almost symmetric, is tested for any difference."""
  by, lams = _by_key(curves), curves[0]['lambdas']
  main, small = _main_scale(c.scales), min(c.scales)
  out = []
  for n in c.noises:
    name = directions.NOISE_LABELS[n]
    out.append(common.finding(
        f'|{name}|·sign(θ), s={main:g}: positive side flatter', lams,
        [by[(n, main, True)]], common.half_diff, expect='negative',
        statistic='err+ − err−'))
  for n in c.noises:
    name = directions.NOISE_LABELS[n]
    out.append(common.finding(
        f'{name} plain, s={main:g}: halves differ', lams,
        [by[(n, main, False)]], common.half_diff, expect='nonzero',
        statistic='err+ − err−'))
  if small != main:
    for n in c.noises:
      if n in _NOT_CENTRED:
        name = directions.NOISE_LABELS[n]
        out.append(common.finding(
            f'{name} plain, s={small:g}: halves differ (paper: slight '
            'asymmetry with BN)', lams, [by[(n, small, False)]],
            common.half_diff, expect='nonzero', statistic='err+ − err−'))
  return out


def _noise_types_digest(c: Config, curves) -> list[dict[str, Any]]:
  """The README's rows: plain and sign-consistent G(0,1) and {1} at s = 1."""
  if 1.0 not in c.scales:
    return []
  index = {k: i for i, k in enumerate(_by_key(curves))}
  rows = []
  for n in _NOISE_DIGEST:
    for sc in (False, True):
      if (n, 1.0, sc) in index:
        rows.append({'label': curves[index[(n, 1.0, sc)]]['label'],
                     'curve': index[(n, 1.0, sc)]})
  return rows


def _noise_types_config() -> Config:
  return Config(dict(noises=tuple(directions.NOISES), scales=(0.2, 1.0, 2.0)))


def _noise_types_validate(config: Config) -> None:
  for n in config.noise_types.noises:
    directions.check_noise(n)


NOISE_TYPES = Study(
    'noise_types', noise_types, _noise_types_config,
    figure=noise_types_figure,
    validate=_noise_types_validate,
    fields=(checks.positive('noise_types.scales', why=common.SCALE_WHY),))


# ---------------------------------------------------------------- sign_ratio


def sign_ratio(p: Prober, s: Subject) -> dict[str, Any]:
  """Fig. 4: a fraction r of the elements takes θ's sign.

  Args:
    p: the Prober.
    s: config.checkpoint.

  Returns:
    One curve per ratio, and the mean error of each half against r.
  """
  c = p.config.sign_ratio
  norm = p.config.normalization
  curves = [
      common.line(p, s, f'r={r:.1f}', 'r', functools.partial(
          lambda seed, r: common.make_direction(
              p, s, seed, noise=c.noise, ratio=r, normalization=norm), r=r),
                  scale=c.scale, seeds=p.config.seeds,
                  **common.curve_meta(c.noise, r == 1.0, float(r), norm))
      for r in c.ratios]
  summary = {'ratios': [float(r) for r in c.ratios],
             'positive': [cv['positive_error'] for cv in curves],
             'negative': [cv['negative_error'] for cv in curves],
             'positive_ci': [cv.get('positive_error_ci') for cv in curves],
             'negative_ci': [cv.get('negative_error_ci') for cv in curves],
             'noise': c.noise, 'scale': c.scale}
  return {'curves': curves, 'summary': summary,
          'findings': _sign_ratio_findings(c, curves),
          'digest': [{'label': f'sign ratio r = {float(r):.1f}', 'curve': i}
                     for i, r in enumerate(c.ratios) if r in (0.0, 0.5, 1.0)]}


def _sign_ratio_findings(c: Config, curves) -> list[dict[str, Any]]:
  """Fig. 4's claims between the smallest and the largest r: the positive
  side falls and the negative side rises as r grows (the same draws of ε,
  seed by seed), and the halves at the smallest r differ (the paper: equal
  at r = 0)."""
  if len(curves) < 2:
    return []
  order = np.argsort(c.ratios)
  lo, hi = curves[order[0]], curves[order[-1]]
  r_lo, r_hi = float(c.ratios[order[0]]), float(c.ratios[order[-1]])
  lams = lo['lambdas']
  return [
      common.finding(f'r {r_lo:g} → {r_hi:g}: positive side falls', lams,
                     [lo, hi], lambda a, b: a[..., 0] - b[..., 0],
                     expect='positive',
                     statistic=f'err+(r={r_lo:g}) − err+(r={r_hi:g})'),
      common.finding(f'r {r_lo:g} → {r_hi:g}: negative side rises', lams,
                     [lo, hi], lambda a, b: b[..., 1] - a[..., 1],
                     expect='positive',
                     statistic=f'err−(r={r_hi:g}) − err−(r={r_lo:g})'),
      common.finding(f'r={r_lo:g}: halves differ (paper: equal at r = 0)',
                     lams, [lo], common.half_diff, expect='nonzero',
                     statistic='err+ − err−')]


def _sign_ratio_config() -> Config:
  return Config(dict(noise='gaussian', ratios=tuple(i / 10 for i in range(11)),
                     scale=1.0))


def _sign_ratio_validate(config: Config) -> None:
  directions.check_noise(config.sign_ratio.noise)
  if any(r < 0 or r > 1 for r in config.sign_ratio.ratios):
    raise InputError('config.sign_ratio.ratios must lie in [0, 1].')


SIGN_RATIO = Study(
    'sign_ratio', sign_ratio, _sign_ratio_config,
    validate=_sign_ratio_validate, figure=sign_ratio_figure,
    fields=(checks.Field('sign_ratio.ratios', float, lo=0, hi=1),
            checks.positive('sign_ratio.scale', why=common.SCALE_WHY)))


# ------------------------------------------------------------------- special


_SPECIAL_LABELS = {'init': 'ε1 = θ0', 'theta': 'ε2 = θf',
                   'sign': 'ε3 = sign(θf)', 'sign_centered': 'ε4 = sign(θf−μ)',
                   'sgp': 'ε5 = sgp(θf)', 'sgp_centered': 'ε6 = sgp(θf−μ)'}
# Special directions whose elements all have θf's sign.
_SIGN_CONSISTENT = {'sign', 'theta', 'sign_centered'}
# Special directions the paper finds symmetric (ε5, ε6); it finds the others
# asymmetric (ε1 = θ0 in networks with BN).
_SYMMETRIC = {'sgp', 'sgp_centered'}


def special(p: Prober, s: Subject) -> dict[str, Any]:
  """Fig. 5: the six special directions (deterministic: one seed).

  Args:
    p: the Prober.
    s: config.checkpoint.

  Returns:
    One curve per direction, each in its own panel.
  """
  c, norm = p.config.special, p.config.normalization
  curves = [common.line(p, s, _SPECIAL_LABELS[d], _SPECIAL_LABELS[d],
                        functools.partial(lambda seed, d: common.make_direction(
                            p, s, seed, special=d, normalization=norm), d=d),
                        scale=c.scale,
                        **common.curve_meta(d, d in _SIGN_CONSISTENT, None,
                                            norm))
            for d in c.directions]
  lams = curves[0]['lambdas'] if curves else []
  findings = []
  for d, cv in zip(c.directions, curves):
    asym = d not in _SYMMETRIC
    findings.append(common.finding(
        f'{_SPECIAL_LABELS[d]}: ' + ('positive side flatter' if asym else
                                     'halves differ (paper: symmetric)'),
        lams, [cv], common.half_diff,
        expect='negative' if asym else 'nonzero', statistic='err+ − err−'))
  digest = [{'label': _SPECIAL_LABELS[d], 'curve': i}
            for i, d in enumerate(c.directions) if d in ('sign', 'sgp')]
  return {'curves': curves, 'findings': findings, 'digest': digest}


def _special_config() -> Config:
  return Config(dict(directions=directions.SPECIAL, scale=1.0))


def _special_validate(config: Config) -> None:
  for name in config.special.directions:
    directions.check_special(name)


SPECIAL = Study(
    'special', special, _special_config, validate=_special_validate,
    fields=(checks.positive('special.scale', why=common.SCALE_WHY),))


# -------------------------------------------------------------------- groups


def groups_kind(p: Prober, s: Subject) -> dict[str, Any]:
  """Fig. 6: plain and sign-consistent noise on each parameter group.

  Args:
    p: the Prober.
    s: config.checkpoint.

  Returns:
    Two curves per group the model has (an empty group is skipped).
  """
  c = p.config.groups
  curves = [common.noise_line(p, s, c.noise, sc, g, scale=c.scale, group=g)
            for g in c.groups for sc in (False, True)
            if tree.size(s.params, groups.mask(s.params, g))]
  findings = [common.finding(f"{cv['label']} on {cv['group']}: positive side "
                             'flatter', cv['lambdas'], [cv], common.half_diff,
                             expect='negative', statistic='err+ − err−')
              for cv in curves if cv['sign_consistent']]
  return {'curves': curves, 'findings': findings}


def _groups_config() -> Config:
  return Config(dict(groups=groups.GROUPS, noise='gaussian', scale=1.0))


def _groups_validate(config: Config) -> None:
  directions.check_noise(config.groups.noise)
  for g in config.groups.groups:
    groups.check_group(g)


GROUPS = Study(
    'groups', groups_kind, _groups_config, validate=_groups_validate,
    fields=(checks.positive('groups.scale', why=common.SCALE_WHY),))

# This family's studies, in the order of the registry (probe/registry.py).
STUDIES = (NOISE_TYPES, SIGN_RATIO, SPECIAL, GROUPS,)
