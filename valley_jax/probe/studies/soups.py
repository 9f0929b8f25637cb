"""Model soups (paper Sect. 6.1, Fig. 11): two runs from one start θI.

Runs A and B start from the same θI (a fresh init of one seed, or any
checkpoint through `config.train.init_from`) and train on the two disjoint
halves of the training split (`config.data.half` = 0 and 1). For every epoch
kept by both runs, the kind `soups` measures:

* the test accuracy of (1 − λ)θA + λθB on a λ grid that always holds 0, ½
  and 1, with BN statistics recalibrated at every point (config.sweep.recal)
  on the whole training split, i.e. on both halves alike (with recal 'off',
  θA's statistics serve every point);
* SSR-IA, SSR-IB and SSR-AB: the sign consistency ratio (the fraction of
  parameters whose signs agree, `tree.sign_consistency_ratio`) of θI with
  θA, of θI with θB and of θA with θB. The paper names them "sign consistency
  ratios between θI, θA, θB", which only reads as a comparison of the
  parameters themselves (SSR-IA of updates would compare θA − θI with 0).
  The SSR of the two updates, θA − θI with θB − θI, is reported beside them
  as `ssr_updates_ab`;
* the soup gain Acc(½θA + ½θB) − ½(Acc θA + Acc θB).

Only `params` are compared; BN running statistics are not parameters.

>>> soup_gain(acc_a=0.75, acc_b=0.5, acc_soup=0.75)
0.125
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import ml_collections
import numpy as np
import optax

from valley_jax import checkpoint, checks, plots, rundir
from valley_jax.core import tree
from valley_jax.errors import InputError
from valley_jax.plots import plt
from valley_jax.probe.prober import Prober, Subject, architecture
from valley_jax.probe.studies import common
from valley_jax.probe.study import Study

Config = ml_collections.ConfigDict
# The λ every curve holds, whatever the grid: θA, the soup and θB.
_ENDS = (0.0, 0.5, 1.0)


# -------------------------------------------------------------------- figures


def soups_figure(results: dict[str, Any], folder: str) -> list[str]:
  """Fig. 11: model soups of two runs from one start θI.

  Left: test accuracy of (1 − λ)θA + λθB, one line per kept epoch (light to
  dark). Right, per epoch: SSR-IA, SSR-IB and SSR-AB (left axis) and the
  soup gain Acc(½θA + ½θB) − ½(Acc θA + Acc θB) (right axis, dashed).

  Args:
    results: a `soups` results.json (its 'curves' and 'soups' rows).
    folder: where figure.png and figure.pdf go.
  Returns:
    The paths written.
  """
  rows, curves = results['soups'], results['curves']
  fig, (ax, ax_ssr) = plt.subplots(1, 2, figsize=(9.5, 3.4))
  cmap = plt.get_cmap('viridis')
  for k, c in enumerate(curves):
    ax.plot(c['lambdas'], 1.0 - plots.clipped(c['error']), '-o', ms=2.5,
            color=cmap(0.9 * k / max(len(curves) - 1, 1)),
            label=f"epoch {c.get('epoch', k)}")
  ax.set_xlabel('λ: (1−λ)θA + λθB')
  ax.set_ylabel('test accuracy')
  ax.grid(alpha=0.3)
  ax.legend(fontsize=6)
  x = np.arange(len(rows))
  for key, label, marker in (('ssr_ia', 'SSR-IA', 'o'),
                             ('ssr_ib', 'SSR-IB', 's'),
                             ('ssr_ab', 'SSR-AB', '^')):
    ax_ssr.plot(x, plots.clipped([r[key] for r in rows]), f'{marker}-', ms=4,
                label=label)
  ax_ssr.set_xticks(x, [str(r['epoch']) for r in rows])
  ax_ssr.set_xlabel('epoch')
  ax_ssr.set_ylabel('sign consistency ratio')
  ax_ssr.grid(alpha=0.3)
  ax_gain = ax_ssr.twinx()
  ax_gain.plot(x, plots.clipped([r['gain'] for r in rows]), 'kd--', ms=4,
               label='gain')
  ax_gain.axhline(0.0, color='grey', lw=0.5)
  ax_gain.set_ylabel('Acc(½θA+½θB) − ½(Acc θA + Acc θB)', fontsize=8)
  handles = (ax_ssr.get_legend_handles_labels()[0] +
             ax_gain.get_legend_handles_labels()[0])
  ax_ssr.legend(handles, [h.get_label() for h in handles], fontsize=6)
  init = results.get('init', {})
  fig.suptitle(f"soups: {results['model']} on {results['dataset']}, θI = "
               f"{init.get('workdir', '?')}@{init.get('epoch', '?')}",
               fontsize=9)
  fig.tight_layout()
  return plots.save(fig, folder, 'figure')


# ------------------------------------------------------------------ measures


def ssr_triplet(theta_i, theta_a, theta_b) -> dict[str, float]:
  """SSR-IA, SSR-IB, SSR-AB of the parameters and the SSR of the updates.

  Args:
    theta_i, theta_a, theta_b: parameter pytrees of one structure.

  Returns:
    {'ssr_ia', 'ssr_ib', 'ssr_ab', 'ssr_updates_ab'}, each in [0, 1].

  >>> import numpy as np
  >>> i, a = {'w': np.array([1., 1, -1, -1])}, {'w': np.array([2., -1, -2, -1])}
  >>> b = {'w': np.array([2., 2, -2, -2])}  # b − i = i; a − i = [1, -2, -1, 0].
  >>> ssr_triplet(i, a, b)
  {'ssr_ia': 0.75, 'ssr_ib': 1.0, 'ssr_ab': 0.75, 'ssr_updates_ab': 0.5}
  """
  ssr = tree.sign_consistency_ratio
  return {'ssr_ia': ssr(theta_i, theta_a), 'ssr_ib': ssr(theta_i, theta_b),
          'ssr_ab': ssr(theta_a, theta_b),
          'ssr_updates_ab': ssr(optax.tree.sub(theta_a, theta_i),
                                optax.tree.sub(theta_b, theta_i))}


def soup_gain(acc_a: float, acc_b: float, acc_soup: float) -> float:
  """Acc(½θA + ½θB) − ½(Acc θA + Acc θB): > 0 when the soup helps.

  Args:
    acc_a, acc_b: test accuracy of θA and of θB.
    acc_soup: test accuracy of ½θA + ½θB.

  Returns:
    The gain (negative: a barrier between the two models).

  >>> soup_gain(0.5, 0.7, 0.1)
  -0.5
  """
  return acc_soup - 0.5 * (acc_a + acc_b)


def lambdas(c: Config) -> np.ndarray:
  """The λ grid of config.soups joined with 0, ½ and 1 (sorted, unique).

  Args:
    c: config.soups.

  Returns:
    The λ values.

  >>> lambdas(Config(dict(lam_min=0.0, lam_max=1.0, num_points=2))).tolist()
  [0.0, 0.5, 1.0]
  """
  grid = np.linspace(c.lam_min, c.lam_max, c.num_points)
  return np.unique(np.round(np.concatenate([grid, _ENDS]), 12))


def _accuracy_at(curve: dict[str, Any], lam: float) -> float:
  i = int(np.argmin(np.abs(np.asarray(curve['lambdas']) - lam)))
  return 1.0 - curve['error'][i]


def epoch_row(epoch: int, curve: dict[str, Any], theta_i, theta_a,
              theta_b) -> dict[str, Any]:
  """One epoch of results.json's `soups`: accuracies, SSRs and the gain.

  Args:
    epoch: the epoch of θA and θB.
    curve: the interpolation curve of that epoch (holds λ = 0, ½, 1).
    theta_i, theta_a, theta_b: the parameters.

  Returns:
    {'epoch', 'acc_a', 'acc_b', 'acc_soup', 'gain', 'ssr_*'}.
  """
  acc = [_accuracy_at(curve, lam) for lam in _ENDS]
  return {'epoch': epoch, 'acc_a': acc[0], 'acc_soup': acc[1],
          'acc_b': acc[2], 'gain': soup_gain(acc[0], acc[2], acc[1]),
          **ssr_triplet(theta_i, theta_a, theta_b)}


# ---------------------------------------------------------------------- kind


def soups(p: Prober, _) -> dict[str, Any]:
  """Fig. 11: per kept epoch, (1 − λ)θA + λθB, SSRs and the soup gain.

  Args:
    p: the Prober.

  Returns:
    One interpolation curve per epoch ('curves', with its 'epoch'), the rows
    of `soups` (epoch_row) and the resolved start θI ('init').
  """
  c = p.config.soups
  init_dir, init_epoch = init_of(p.config)
  init_epoch = p.pin(init_dir, init_epoch)
  start, _ = checkpoint.restore_model(init_dir, init_epoch, p.mesh)
  lams = lambdas(c)
  setting, curves, rows = None, [], []
  for e in epochs_of(p.config):
    a = p.subject(c.checkpoint_a, e, f'θA@{e}')
    b = p.subject(c.checkpoint_b, e, f'θB@{e}')
    _check_same(start, a, b, c)
    setting = setting or _whole_split_setting(p, a)
    eps = optax.tree.sub(b.params, a.params)
    curve = common.line(p, dataclasses.replace(a, sweep=setting),
                        f'epoch {e}', 'interpolation', lambda _, d=eps: d,
                        lams=lams, epoch=e,
                        **common.curve_meta('difference', False, None, 'none'))
    curves.append(curve)
    rows.append(epoch_row(e, curve, start['params'], a.params, b.params))
  return {'curves': curves, 'soups': rows,
          'init': {'workdir': init_dir,
                   'epoch': init_epoch},
          'halves': {'a': a.train_config['data'].get('half'),
                     'b': b.train_config['data'].get('half')}}


def _check_same(start, a: Subject, b: Subject, c) -> None:
  """θI, θA and θB have one architecture (ValueError otherwise)."""
  variables = {'params': a.params, 'batch_stats': a.batch_stats}
  rundir.check_same_architecture(
      variables, {'params': b.params, 'batch_stats': b.batch_stats},
      f'config.soups.checkpoint_b={c.checkpoint_b!r}')
  rundir.check_same_architecture(
      variables, start, f'config.soups.init (θI of {c.checkpoint_a!r})')


def _whole_split_setting(p: Prober, s: Subject):
  """The compiled sweep of `s` on its dataset with both halves: BN is
  recalibrated on the same data for θA, θB and every point between (a run
  trained on the whole split shares this one)."""
  data_cfg = {**s.train_config['data'], 'half': None}
  return p.setting(s.model, s.train_config, data_cfg, bool(s.batch_stats))


# -------------------------------------------------------------------- config


def init_of(config: Config) -> tuple[str, int | str]:
  """(workdir, epoch) of θI: config.soups.init, default epoch 0 of run A.

  Args:
    config: the probe config.

  Returns:
    The workdir and the epoch (an int or 'last').

  >>> c = Config(dict(soups=dict(checkpoint_a='runs/a', init='')))
  >>> init_of(c), init_of(Config(dict(soups=dict(init='runs/pre@30'))))
  (('runs/a', 0), ('runs/pre', 30))
  """
  c = config.soups
  if not c.init:
    return c.checkpoint_a, 0
  return rundir.split_epoch(c.init)


def epochs_of(config: Config) -> list[int]:
  """config.soups.epochs, or every epoch ≥ 1 kept by both runs.

  Args:
    config: the probe config.

  Returns:
    The epochs to analyse, sorted.
  """
  c = config.soups
  if c.epochs:
    return sorted({int(e) for e in c.epochs})
  kept = set(checkpoint.epochs(c.checkpoint_a)) & set(
      checkpoint.epochs(c.checkpoint_b))
  return sorted(e for e in kept if e >= 1)


def _checkpoints(config: Config) -> list[tuple[str, Any]]:
  c = config.soups
  es = epochs_of(config)
  return ([(c.checkpoint_a, e) for e in es] +
          [(c.checkpoint_b, e) for e in es] + [init_of(config)])


def _check_checkpoints(config: Config) -> None:
  """The runs exist, keep the epochs and are of one model and data split."""
  c = config.soups
  for name in ('checkpoint_a', 'checkpoint_b'):
    if not c[name]:
      raise InputError(f'config.soups.{name} is empty: give the workdirs of '
                       'runs A and B (configs/soups_digits.py trains them).')
    common.check_checkpoint(c[name], 'last', f'config.soups.{name}')
  es = epochs_of(config)
  if not es:
    raise InputError(f'{c.checkpoint_a} and {c.checkpoint_b} keep no common '
                     'epoch ≥ 1; set config.soups.epochs.')
  for e in es:
    for name in ('checkpoint_a', 'checkpoint_b'):
      common.check_checkpoint(c[name], e, f'config.soups.{name}')
  init_dir, init_epoch = init_of(config)
  common.check_checkpoint(init_dir, init_epoch, 'config.soups.init')
  _check_fit(c, init_dir)


def _split(workdir: str) -> tuple[str, str]:
  """Architecture and data config (without the half) of a run."""
  cfg = checkpoint.load_config(workdir)
  data_cfg = {k: v for k, v in cfg['data'].items() if k != 'half'}
  return architecture(cfg), json.dumps(data_cfg, sort_keys=True)


def _check_fit(c: Config, init_dir: str) -> None:
  (arch_a, data_a), (arch_b, data_b) = (_split(c.checkpoint_a),
                                        _split(c.checkpoint_b))
  if arch_a != arch_b or data_a != data_b:
    raise InputError(
        'soups needs runs A and B of one model on one dataset (their '
        f'config.data may differ only in half); got {arch_a}, {data_a} and '
        f'{arch_b}, {data_b}.')
  arch_i = architecture(checkpoint.load_config(init_dir))
  if arch_i != arch_a:
    raise InputError(f'config.soups.init ({init_dir}) is a {arch_i} model, '
                     f'runs A and B are {arch_a}.')


def _config() -> Config:
  return Config(dict(
      checkpoint_a='', checkpoint_b='',
      # θI as 'WORKDIR[@EPOCH]' (no epoch: the last); '' = epoch 0 of run A,
      # which is the start of both runs (a fresh init or train.init_from).
      init='',
      epochs=(),  # Empty: every epoch ≥ 1 kept by both runs.
      lam_min=0.0, lam_max=1.0, num_points=11))


def _validate(config: Config) -> None:
  c = config.soups
  common.check_range(c.lam_min, c.lam_max, c.num_points, 'config.soups')


SOUPS = Study(
    'soups', soups, _config, validate=_validate, figure=soups_figure,
    fields=(checks.count('soups.epochs', 0),
            checks.finite('soups.lam_min'),
            checks.finite('soups.lam_max'),
            checks.count('soups.num_points')),
    checkpoints=_checkpoints, multi_run=True,
    check_checkpoints=_check_checkpoints)

# This family's studies, in the order of the registry (probe/registry.py).
STUDIES = (SOUPS,)
