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
* the soup gain Acc(½θA + ½θB) − ½(Acc θA + Acc θB), and beside it (not in
  the paper) the same for the test CE loss, ½(CE θA + CE θB) − CE(½θA + ½θB),
  which is not limited to whole test images (`loss_gain`, > 0: the soup
  helps).

Only `params` are compared; BN running statistics are not parameters.
`config.soups.compare` = 'RUN_A,RUN_B[,INIT]' measures a second pair alike
(e.g. from a random start beside a pre-trained one); the figure draws both
on shared axes: SSRs on [0.5, 1], the gain on a symmetric range of at least
±3 test images with the ±1-test-image band marked (one image is 1/n_test).

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
from valley_jax.core import stats, tree
from valley_jax.errors import InputError
from valley_jax.plots import plt
from valley_jax.probe.prober import Prober, Subject, architecture
from valley_jax.probe.studies import align, common
from valley_jax.probe.study import Study

Config = ml_collections.ConfigDict
# The λ every curve holds, whatever the grid: θA, the soup and θB.
_ENDS = (0.0, 0.5, 1.0)


# -------------------------------------------------------------------- figures

# Fixed axis ranges, so that the figures of two starts (or two probes) can be
# read side by side and one or two test images never fill an axis.
SSR_LIMITS = (0.5, 1.0)  # Chance to identical; lowered only for a value below.
# The gain axis is ±(the first step that holds every gain and ±GAIN_IMAGES
# test images): a few fixed ranges, not one fitted to the data.
GAIN_STEPS = (0.05, 0.1, 0.2, 0.5, 1.0)
GAIN_IMAGES = 3
_SSRS = (('ssr_ia', 'SSR-IA', 'tab:blue', 'o'),
         ('ssr_ib', 'SSR-IB', 'tab:orange', 's'),
         ('ssr_ab', 'SSR-AB', 'tab:green', '^'))
_STYLES = ('-', '--', ':', '-.')  # One line style per start.


def gain_limit(gains, n_test: int | None) -> float:
  """Half the height of the (symmetric) gain axis.

  Args:
    gains: the gains drawn (None or non-finite ones are ignored).
    n_test: test images behind each accuracy (one image = 1 / n_test);
      None: unknown.

  Returns:
    The first of GAIN_STEPS at or above GAIN_IMAGES / n_test and 1.05 ×
    every |gain| (a gain is within [-1, 1]).

  >>> gain_limit([0.01, -0.02], 180), gain_limit([-0.1056], 180)
  (0.05, 0.2)
  >>> gain_limit([0.0], 40), gain_limit([-0.61], None)
  (0.1, 1.0)
  """
  finite = [abs(float(g)) for g in gains if g is not None and np.isfinite(g)]
  need = max([GAIN_IMAGES / n_test if n_test else 0.0] +
             [1.05 * g for g in finite])
  return next((s for s in GAIN_STEPS if s >= need), GAIN_STEPS[-1])


def ssr_bottom(values) -> float:
  """The bottom of the SSR axis: SSR_LIMITS[0], or below the lowest value.

  >>> ssr_bottom([0.9, 0.51]), ssr_bottom([0.43])
  (0.5, 0.4)
  """
  finite = [float(v) for v in values if v is not None and np.isfinite(v)]
  return min([SSR_LIMITS[0]] + [float(np.floor(v * 20)) / 20 for v in finite])


def starts(results: dict[str, Any]) -> list[dict[str, Any]]:
  """The measured starts of a `soups` results.json: the main pair, then the
  pair of config.soups.compare if there is one."""
  main = {k: results.get(k) for k in ('label', 'curves', 'soups', 'init',
                                      'n_test')}
  return [main] + ([results['compare']] if results.get('compare') else [])


def soups_figure(results: dict[str, Any], folder: str) -> list[str]:
  """Fig. 11: model soups of two runs from one start θI, for every start.

  One panel per start: test accuracy of (1 − λ)θA + λθB, one line per kept
  epoch (light to dark), on one y range for all starts. Then one axis per
  quantity against the epochs, every start in it (solid: the first, dashed:
  the second): SSR-IA, SSR-IB and SSR-AB on SSR_LIMITS; the soup gain
  Acc(½θA + ½θB) − ½(Acc θA + Acc θB) on a symmetric axis of a few fixed
  sizes (gain_limit) with a grey band of ±1 test image around 0: a gain
  inside it is at most one image.

  Args:
    results: a `soups` results.json.
    folder: where figure.png (and the other formats) go.

  Returns:
    The paths written.
  """
  ss = starts(results)
  fig, axes = plt.subplots(1, len(ss) + 2, figsize=(3.3 * (len(ss) + 2), 3.4))
  for j, (ax, s) in enumerate(zip(axes, ss)):
    _accuracy_panel(ax, s, legend=j == 0)  # One colour per epoch in each.
  low = min(1.0 - plots.ERROR_FLOOR,
            *(v for s in ss for c in s['curves']
              for v in 1.0 - plots.clipped(c['error'])))
  for ax in axes[:len(ss)]:
    ax.set_ylim(low - 0.02 * (1 - low), 1.0 + 0.02 * (1 - low))
  epochs = sorted({r['epoch'] for s in ss for r in s['soups']})
  _ssr_panel(axes[-2], ss, epochs)
  _gain_panel(axes[-1], ss, epochs)
  note = plots.band_note(results['curves']).split(';')[0]
  fig.suptitle(f"soups: {results['model']} on {results['dataset']}"
               f"{note.replace('error 95%', 'accuracy 95%')}", fontsize=9)
  fig.tight_layout()
  return plots.save(fig, folder, 'figure')


def _label(s: dict[str, Any]) -> str:
  init = s.get('init') or {}
  return s.get('label') or f"θI = {init.get('workdir', '?')}@" \
      f"{init.get('epoch', '?')}"


def _accuracy_panel(ax, s: dict[str, Any], legend: bool) -> None:
  cmap, curves = plt.get_cmap('viridis'), s['curves']
  for k, c in enumerate(curves):
    color = cmap(0.9 * k / max(len(curves) - 1, 1))
    ax.plot(c['lambdas'], 1.0 - plots.clipped(c['error']), '-o', ms=2.5,
            color=color, label=f"epoch {c.get('epoch', k)}")
    b = plots.band(c, 'error')  # Accuracy = 1 − error: the band flips.
    if b is not None:
      ax.fill_between(c['lambdas'], 1.0 - b[1], 1.0 - b[0], color=color,
                      alpha=0.15, lw=0)
  ax.set_xlabel('λ: (1−λ)θA + λθB')
  ax.set_ylabel('test accuracy')
  ax.set_title(_label(s), fontsize=8)
  ax.grid(alpha=0.3)
  if legend:
    ax.legend(fontsize=5.5, ncol=2, loc='best')


def _ssr_panel(ax, ss: list[dict[str, Any]], epochs: list[int]) -> None:
  values = []
  for j, s in enumerate(ss):
    x = [epochs.index(r['epoch']) for r in s['soups']]
    for key, name, color, marker in _SSRS:
      y = plots.clipped([r[key] for r in s['soups']])
      values += list(y)
      ax.plot(x, y, marker, ls=_STYLES[j % 4], color=color, ms=3.5,
              label=name if j == 0 else None)
  if len(ss) > 1:  # Which line style is which start.
    for j, s in enumerate(ss):
      ax.plot([], [], color='k', ls=_STYLES[j % 4], label=_label(s))
  ax.set_ylim(ssr_bottom(values), SSR_LIMITS[1])
  _epoch_axis(ax, epochs)
  ax.set_ylabel('sign consistency ratio')
  ax.legend(fontsize=6, loc='lower left')


def _gain_panel(ax, ss: list[dict[str, Any]], epochs: list[int]) -> None:
  # The coarsest resolution of the starts (results written before n_test
  # was recorded have none: no band).
  n = min((int(s['n_test']) for s in ss if s.get('n_test')), default=None)
  if n:
    ax.axhspan(-1.0 / n, 1.0 / n, color='0.85', lw=0,
               label=f'±1 test image (1/{n})')
  ax.axhline(0.0, color='grey', lw=0.6)
  gains = []
  for j, s in enumerate(ss):
    x = [epochs.index(r['epoch']) for r in s['soups']]
    y = plots.clipped([r['gain'] for r in s['soups']])
    gains += list(y)
    ax.plot(x, y, 'kd', ls=_STYLES[j % 4], ms=4, label=_label(s))
    ci = [r.get('gain_ci') for r in s['soups']]
    if all(ci):  # 95 % intervals over the test examples.
      lo_hi = np.asarray(ci, np.float64)
      ax.errorbar(x, y, yerr=np.abs(np.stack([y - lo_hi[:, 0],
                                              lo_hi[:, 1] - y])),
                  fmt='none', ecolor='k', capsize=2, lw=0.8,
                  label='95% interval (test examples)' if j == 0 else None)
      gains += list(lo_hi.ravel())
  top = gain_limit(gains, n)
  ax.set_ylim(-top, top)
  _epoch_axis(ax, epochs)
  ax.set_ylabel('gain: Acc(½θA+½θB) − ½(Acc θA+Acc θB)', fontsize=7)
  ax.legend(fontsize=6, loc='best')


def _epoch_axis(ax, epochs: list[int]) -> None:
  ax.set_xticks(range(len(epochs)), [str(e) for e in epochs])
  ax.set_xlabel('epoch')
  ax.grid(alpha=0.3)


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


def _at(curve: dict[str, Any], metric: str, lam: float) -> float:
  i = int(np.argmin(np.abs(np.asarray(curve['lambdas']) - lam)))
  return curve[metric][i]


def epoch_row(epoch: int, curve: dict[str, Any], theta_i, theta_a,
              theta_b) -> dict[str, Any]:
  """One epoch of results.json's `soups`: accuracies, SSRs and the gain.

  Args:
    epoch: the epoch of θA and θB.
    curve: the interpolation curve of that epoch (holds λ = 0, ½, 1).
    theta_i, theta_a, theta_b: the parameters.

  Returns:
    {'epoch', 'acc_a', 'acc_b', 'acc_soup', 'gain', 'loss_gain', 'ssr_*'}:
    loss_gain is ½(CE θA + CE θB) − CE(½θA + ½θB) on the test set (> 0 when
    the soup helps; not the paper's, but not limited to whole test images).
  """
  acc = [1.0 - _at(curve, 'error', lam) for lam in _ENDS]
  loss = [_at(curve, 'loss', lam) for lam in _ENDS] if 'loss' in curve else (
      None,) * 3
  loss_gain = (None if None in loss else
               0.5 * (loss[0] + loss[2]) - loss[1])
  return {'epoch': epoch, 'acc_a': acc[0], 'acc_soup': acc[1],
          'acc_b': acc[2], 'gain': soup_gain(acc[0], acc[2], acc[1]),
          'loss_gain': loss_gain,
          **ssr_triplet(theta_i, theta_a, theta_b)}


# ---------------------------------------------------------------------- kind


@dataclasses.dataclass(frozen=True)
class Pair:
  """Runs A and B of one start: workdirs, θI ('DIR[@EPOCH]', '' = epoch 0
  of A) and the start's name in the figure ('' = θI's workdir)."""

  a: str
  b: str
  init: str = ''
  label: str = ''


def pairs_of(config: Config) -> list[Pair]:
  """The pair of config.soups.checkpoint_a/b, then config.soups.compare's.

  Args:
    config: the probe config.

  Returns:
    One or two pairs.

  >>> c = Config(dict(soups=dict(checkpoint_a='r/a', checkpoint_b='r/b',
  ...     init='', label='random', compare='f/a,f/b,pre@3', compare_label='')))
  >>> [(q.a, q.b, q.init, q.label) for q in pairs_of(c)]
  [('r/a', 'r/b', '', 'random'), ('f/a', 'f/b', 'pre@3', '')]
  """
  c = config.soups
  out = [Pair(c.checkpoint_a, c.checkpoint_b, c.init, c.get('label', ''))]
  if c.get('compare'):
    a, b, *init = c.compare.split(',')
    out.append(Pair(a, b, init[0] if init else '', c.get('compare_label',
                                                         '')))
  return out


def gain_per_example(curve: dict[str, Any]) -> np.ndarray | None:
  """Each test example's share of the soup gain: [S, N] values whose mean is
  Acc(½θA + ½θB) − ½(Acc θA + Acc θB) = ½(e_A + e_B) − e_soup per example
  (None without per-example errors).

  Args:
    curve: an interpolation curve made by common.line (holds λ = 0, ½, 1).

  Returns:
    [S, N] or None.
  """
  e = curve.get(common.PER_EXAMPLE)
  if e is None:
    return None
  lams = np.asarray(curve['lambdas'])
  at = [int(np.argmin(np.abs(lams - lam))) for lam in _ENDS]
  return 0.5 * (e[..., at[0]] + e[..., at[2]]) - e[..., at[1]]


def gain_interval(curve: dict[str, Any]) -> dict[str, Any]:
  """The 95 % interval of an epoch's soup gain over the test examples (and
  the seeds of the curve): {'gain_ci', 'gain_n_examples'}, or {}.

  Args:
    curve: the epoch's interpolation curve.

  Returns:
    The keys to add to the epoch's row.
  """
  g = gain_per_example(curve)
  if g is None:
    return {}
  (b,) = stats.bootstrap_means(g[..., None], bounds=[(-1.0, 1.0)])
  return {'gain_ci': b['ci'], 'gain_n_examples': b['n_examples']}


def _findings(main: dict[str, Any], other: dict[str, Any] | None
              ) -> list[dict[str, Any]]:
  """The soup gain at the last epoch is positive, for each start; and the
  two starts' gains differ (example by example, on the same test set)."""
  out = []
  last = {}
  for m in (main, other):
    if not m or not m['curves']:
      continue
    cv = m['curves'][-1]
    name = m['label'] or m['init']['workdir']
    last[name] = cv
    g = gain_per_example(cv)
    if g is not None:
      (b,) = stats.bootstrap_means(g[..., None], bounds=[(-1.0, 1.0)])
      out.append(stats.finding(
          f"{name}: soup gain > 0 at epoch {cv['epoch']}", b,
          expect='positive',
          statistic='Acc(½θA + ½θB) − ½(Acc θA + Acc θB)'))
  if len(last) == 2:
    (na, ca), (nb, cb) = last.items()
    ga, gb = gain_per_example(ca), gain_per_example(cb)
    if ga is not None and gb is not None:
      (b,) = stats.bootstrap_means((ga.mean(0) - gb.mean(0))[None, :, None],
                                   bounds=[(-2.0, 2.0)])
      out.append(stats.finding(
          f'soup gains differ: {na} (epoch {ca["epoch"]}) − {nb} (epoch '
          f'{cb["epoch"]})', b, expect='nonzero',
          statistic='difference of the two gains'))
  return out


def soups(p: Prober, _) -> dict[str, Any]:
  """Fig. 11: per kept epoch, (1 − λ)θA + λθB, SSRs and the soup gain.

  Args:
    p: the Prober.

  Returns:
    For the pair of config.soups.checkpoint_a/b: one interpolation curve
    per epoch ('curves', with its 'epoch'), the rows of `soups`
    (epoch_row), the resolved start θI ('init'), the halves, the start's
    'label' and 'n_test' (test images behind each accuracy). With
    config.soups.compare, the same for that pair under 'compare'. With
    config.soups.align, θB at each epoch is θB with its units permuted to
    θA's (align.aligned): the curves, SSRs and soups are of that θB.
  """
  main, *other = [_measure(p, q, i) for i, q in enumerate(pairs_of(p.config))]
  findings = _findings(main, other[0] if other else None)
  if other:  # The compare pair's curves are not the runner's: strip here.
    other[0]['curves'] = [{k: v for k, v in c.items() if not k.startswith('_')}
                          for c in other[0]['curves']]
  return {**main, **({'compare': other[0]} if other else {}),
          'findings': findings}


def _measure(p: Prober, q: Pair, index: int) -> dict[str, Any]:
  """One pair: its curves, rows, θI, halves, label and n_test."""
  c = p.config.soups
  init_dir, init_epoch = start_of(q)
  init_epoch = p.pin(init_dir, init_epoch)
  start, _ = checkpoint.restore_model(init_dir, init_epoch, p.mesh)
  lams = lambdas(c)
  setting, curves, rows = None, [], []
  for e in _epochs(c, q):
    a = p.subject(q.a, e, f'θA@{e}')
    b = p.subject(q.b, e, f'θB@{e}')
    _check_same(start, a, b, q, _field(index))
    setting = setting or _whole_split_setting(p, a)
    theta_b = align.aligned(p, a, b)['params'] if c.align else b.params
    eps = optax.tree.sub(theta_b, a.params)
    curve = common.line(p, dataclasses.replace(a, sweep=setting),
                        f'epoch {e}', 'interpolation', lambda _, d=eps: d,
                        lams=lams, epoch=e,
                        **common.curve_meta('difference', False, None, 'none'))
    curves.append(curve)
    rows.append(epoch_row(e, curve, start['params'], a.params, theta_b))
    rows[-1].update(gain_interval(curve))
  return {'label': q.label, 'curves': curves, 'soups': rows,
          'init': {'workdir': init_dir, 'epoch': init_epoch},
          'halves': {'a': a.train_config['data'].get('half'),
                     'b': b.train_config['data'].get('half')},
          'n_test': _n_test(p, a)}


def _field(index: int) -> str:
  return 'config.soups.compare' if index else 'config.soups'


def _check_same(start, a: Subject, b: Subject, q: Pair, field: str) -> None:
  """θI, θA and θB have one architecture (ValueError otherwise)."""
  variables = {'params': a.params, 'batch_stats': a.batch_stats}
  rundir.check_same_architecture(
      variables, {'params': b.params, 'batch_stats': b.batch_stats},
      f'{field}: run B {q.b!r}')
  rundir.check_same_architecture(
      variables, start, f'{field}: θI of {q.a!r}')


def _data_config(s: Subject) -> dict[str, Any]:
  return {**s.train_config['data'], 'half': None}


def _whole_split_setting(p: Prober, s: Subject):
  """The compiled sweep of `s` on its dataset with both halves: BN is
  recalibrated on the same data for θA, θB and every point between (a run
  trained on the whole split shares this one)."""
  return p.setting(s.model, s.train_config, _data_config(s),
                   bool(s.batch_stats))


def _n_test(p: Prober, s: Subject) -> int:
  """Test images each accuracy counts (config.sweep.n_test caps them)."""
  n = len(p.dataset(_data_config(s)).y_test)
  return min(n, p.config.sweep.n_test) if p.config.sweep.n_test else n


# -------------------------------------------------------------------- config


def start_of(q: Pair) -> tuple[str, int | str]:
  """(workdir, epoch) of θI: the pair's init, default epoch 0 of run A.

  Args:
    q: the pair.

  Returns:
    The workdir and the epoch (an int or 'last').

  >>> start_of(Pair('runs/a', 'runs/b')), start_of(Pair('a', 'b', 'pre@30'))
  (('runs/a', 0), ('pre', 30))
  """
  if not q.init:
    return q.a, 0
  return rundir.split_epoch(q.init)


def init_of(config: Config) -> tuple[str, int | str]:
  """(workdir, epoch) of θI of config.soups' main pair (start_of).

  Args:
    config: the probe config.

  Returns:
    The workdir and the epoch (an int or 'last').

  >>> c = Config(dict(soups=dict(checkpoint_a='runs/a', checkpoint_b='',
  ...                            init='')))
  >>> init_of(c)
  ('runs/a', 0)
  """
  return start_of(pairs_of(config)[0])


def epochs_of(config: Config) -> list[int]:
  """config.soups.epochs, or every epoch ≥ 1 kept by both runs (main pair).

  Args:
    config: the probe config.

  Returns:
    The epochs to analyse, sorted.
  """
  return _epochs(config.soups, pairs_of(config)[0])


def _epochs(c: Config, q: Pair) -> list[int]:
  if c.epochs:
    return sorted({int(e) for e in c.epochs})
  kept = set(checkpoint.epochs(q.a)) & set(checkpoint.epochs(q.b))
  return sorted(e for e in kept if e >= 1)


def _checkpoints(config: Config) -> list[tuple[str, Any]]:
  """A and B at every epoch, then θI; then the same for compare's pair."""
  out = []
  for q in pairs_of(config):
    es = _epochs(config.soups, q)
    out += [(q.a, e) for e in es] + [(q.b, e) for e in es] + [start_of(q)]
  return out


def _check_checkpoints(config: Config) -> None:
  """The runs exist, keep the epochs and are of one model and data split."""
  for i, q in enumerate(pairs_of(config)):
    _check_pair(config.soups, q, _field(i))


def _check_pair(c: Config, q: Pair, field: str) -> None:
  names = ('checkpoint_a', 'checkpoint_b') if field == 'config.soups' else (
      'compare (run A)', 'compare (run B)')
  for name, workdir in zip(names, (q.a, q.b)):
    if not workdir:
      raise InputError(f'config.soups.{name} is empty: give the workdirs of '
                       'runs A and B (configs/soups_digits.py trains them).')
    common.check_checkpoint(workdir, 'last', f'config.soups.{name}')
  es = _epochs(c, q)
  if not es:
    raise InputError(f'{q.a} and {q.b} keep no common epoch ≥ 1; set '
                     'config.soups.epochs.')
  for e in es:
    for name, workdir in zip(names, (q.a, q.b)):
      common.check_checkpoint(workdir, e, f'config.soups.{name}')
  init_dir, init_epoch = start_of(q)
  common.check_checkpoint(init_dir, init_epoch, f'{field} θI (init)')
  _check_fit(q, init_dir)


def _split(workdir: str) -> tuple[str, str]:
  """Architecture and data config (without the half) of a run."""
  cfg = checkpoint.load_config(workdir)
  data_cfg = {k: v for k, v in cfg['data'].items() if k != 'half'}
  return architecture(cfg), json.dumps(data_cfg, sort_keys=True)


def _check_fit(q: Pair, init_dir: str) -> None:
  (arch_a, data_a), (arch_b, data_b) = _split(q.a), _split(q.b)
  if arch_a != arch_b or data_a != data_b:
    raise InputError(
        'soups needs runs A and B of one model on one dataset (their '
        f'config.data may differ only in half); got {arch_a}, {data_a} and '
        f'{arch_b}, {data_b}.')
  arch_i = architecture(checkpoint.load_config(init_dir))
  if arch_i != arch_a:
    raise InputError(f'θI ({init_dir}) is a {arch_i} model, runs A and B '
                     f'({q.a}) are {arch_a}.')


def _config() -> Config:
  return Config(dict(
      checkpoint_a='', checkpoint_b='',
      # θI as 'WORKDIR[@EPOCH]' (no epoch: the last); '' = epoch 0 of run A,
      # which is the start of both runs (a fresh init or train.init_from).
      init='',
      label='',  # The start's name in the figure; '' = θI's workdir.
      # A second pair, 'RUN_A,RUN_B[,INIT]' (e.g. from a random start),
      # measured alike and drawn in the same figure; '' = none.
      compare='', compare_label='',
      epochs=(),  # Empty: every epoch ≥ 1 kept by both runs.
      lam_min=0.0, lam_max=1.0, num_points=11,
      # θB's units permuted to θA's at every epoch before the soup (weight
      # matching, Git Re-Basin; core/permute.py).
      align=False))


def _validate(config: Config) -> None:
  c = config.soups
  common.check_range(c.lam_min, c.lam_max, c.num_points, 'config.soups')
  if c.compare and len(c.compare.split(',')) not in (2, 3):
    raise InputError(f'config.soups.compare={c.compare!r}: give '
                     "'RUN_A,RUN_B[,INIT]' (INIT as DIR[@EPOCH]) or ''.")


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
