"""The theory demos (paper Sect. 5 and Appendix D) as probe kinds.

Kinds (the functions themselves live in valley_jax/core/theory.py):

* softmax_maps (Fig. 10) and listing2 (Fig. 29, Listing 2): a multinomial
  logistic regression without intercept fitted by scikit-learn on all 1,797
  unstandardised digits (lbfgs, C = 1, fit_intercept=False; Fig. 10 to
  convergence with max_iter 5000, Listing 2 with its max_iter 500; both
  converge in about 170 iterations), evaluated on the same data.
* listing1 (Fig. 27, Listing 1): the ReLU simulation on synthetic vectors.
* activations (Fig. 28): ReLU confusion matrices of config.checkpoint.
* gradient (Appendix D.1): sign(θf) against ∇L(θf), and a curve along ∇L.

softmax_maps, listing1 and listing2 measure no checkpoint (Study
checkpoints = []): they run without any training run and their provenance
is []. Random draws come from the probe's root key (config.seed), so a run
is reproducible; Listing 2's n of draw s uses the key of the G(0,1)
direction of seed s (directions.direction_key), and its listing_draw is
NumPy's np.random.seed(config.seed); randn(*W.shape), the listing's own
draw (theory.listing_noise). Listing 2's CE is clipped as sklearn's
log_loss clips it (theory.log_loss; the exact CE is kept beside it), and
its Taylor terms come in the listing's and the text's definitions
(theory.listing2_point). The softmax kinds and
listing1 use the listings' sign s(w) = 2·[w > 0] − 1; activations and
gradient the probe's (tree.sign, sign(0) = +1).
"""

from __future__ import annotations

import functools
import math
from typing import Any

import jax
import jax.numpy as jnp
import matplotlib.lines
import ml_collections
import numpy as np
import optax
from etils import epath

from valley_jax import checks, plots, sharding
from valley_jax.core import (directions, normalize, stats, sweep, theory,
                             tree)
from valley_jax.errors import InputError
from valley_jax.plots import plt
from valley_jax.probe.prober import Prober, Subject
from valley_jax.probe.studies import common
from valley_jax.probe.study import Study

Config = ml_collections.ConfigDict
# fold_in salt of Listing 1's key, apart from every direction's key.
_LISTING1_SALT = 271_828


# -------------------------------------------------------------------- figures


def _symmetric_map(ax, image, title: str = '') -> None:
  """An image on a diverging map centred on zero, without ticks."""
  v = np.asarray(image, np.float64)
  lim = float(np.abs(v).max()) or 1.0
  ax.imshow(v, cmap='RdBu_r', vmin=-lim, vmax=lim, interpolation='nearest')
  ax.set_xticks([])
  ax.set_yticks([])
  if title:
    ax.set_title(title, fontsize=8)


def softmax_maps_figure(results: dict[str, Any], folder: str) -> list[str]:
  """Fig. 10: a sample per class, then w_c + λ·s(w_c) for each λ."""
  m = results['maps']
  maps, lams = np.asarray(m['maps']), m['lambdas']
  n_k, n_l = len(m['classes']), len(lams)
  fig, axes = plt.subplots(n_k, n_l + 1, figsize=(1.3 * (n_l + 1),
                                                  1.4 * n_k), squeeze=False)
  for k, cls in enumerate(m['classes']):
    axes[k, 0].imshow(np.asarray(m['samples'][k]), cmap='gray_r')
    axes[k, 0].set_xticks([])
    axes[k, 0].set_yticks([])
    axes[k, 0].set_ylabel(f'class {cls}', fontsize=8)
    for j, lam in enumerate(lams):
      corr = m['correlation'][j][k]
      _symmetric_map(axes[k, j + 1], maps[j, k],
                     f'λ={lam:+.2f}\nr={corr:+.2f}' if k == 0 else
                     f'r={corr:+.2f}')
  axes[0, 0].set_title('sample', fontsize=8)
  fig.suptitle('w_c + λ·sign(w_c) (r: correlation with w_c)', fontsize=9)
  fig.tight_layout()
  return plots.save(fig, folder, 'figure') + plots.curve_panels(results, folder,
                                                    'figure_curve')


def listing1_figure(results: dict[str, Any], folder: str) -> list[str]:
  """Fig. 27: one histogram of (w + λ·s(w))ᵀh per λ, with its mean."""
  h, s = results['histograms'], results['summary']
  edges = np.asarray(h['edges'])
  centres = 0.5 * (edges[1:] + edges[:-1])
  n = len(h['lambdas'])
  fig, axes = plt.subplots(1, n, figsize=(2.6 * n, 2.4), sharex=True,
                           sharey=True, squeeze=False)
  for ax, lam, counts, mean in zip(axes[0], h['lambdas'], h['counts'],
                                   s['mean']):
    ax.fill_between(centres, counts, step='mid', alpha=0.7)
    ax.axvline(mean, color='k', ls='--', lw=1)
    ax.axvline(0.0, color='grey', lw=0.5)
    ax.set_title(f'λ={lam:+.2f}, mean={mean:.1f}', fontsize=8)
    ax.set_xlabel('(w + λ·sign(w))ᵀh', fontsize=8)
    ax.tick_params(labelsize=7)
  axes[0, 0].set_ylabel('count')
  fig.tight_layout()
  return plots.save(fig, folder, 'figure')


def _confusion_cell(ax, frac_2x2, title: str) -> None:
  f = np.asarray(frac_2x2, np.float64)
  ax.imshow(f, cmap='Blues', vmin=0.0, vmax=1.0)
  for i in range(2):
    for j in range(2):
      ax.text(j, i, f'{f[i, j]:.2f}', ha='center', va='center', fontsize=7,
              color='white' if f[i, j] > 0.5 else 'black')
  ax.set_xticks([0, 1], ['on', 'off'], fontsize=6)
  ax.set_yticks([0, 1], ['on', 'off'], fontsize=6)
  ax.set_title(title, fontsize=7)


def activations_figure(results: dict[str, Any], folder: str) -> list[str]:
  """Fig. 28: pooled ReLU confusion matrices per λ and the diagonal sums."""
  a, s = results['activations'], results['summary']
  lams = a['lambdas']
  fig = plt.figure(figsize=(max(1.3 * len(lams), 6), 5.2))
  grid = fig.add_gridspec(2, len(lams), height_ratios=(1, 1.6))
  for j, lam in enumerate(lams):
    _confusion_cell(fig.add_subplot(grid[0, j]), a['confusion'][j],
                    f'λ={lam:+.1f}')
  ax = fig.add_subplot(grid[1, :])
  amps = s['amplitudes']
  diag = np.asarray(a['diagonal'])
  index = {lam: j for j, lam in enumerate(lams)}
  for k in range(diag.shape[1]):
    for sign, style in ((1, '-'), (-1, '--')):
      ax.plot(amps, [diag[index[sign * x], k] for x in amps], style,
              color='grey', lw=0.6, alpha=0.6)
  ax.plot(amps, s['positive'], 'o-', color='C0', lw=2, label='λ = +a')
  ax.plot(amps, s['negative'], 's--', color='C3', lw=2, label='λ = −a')
  ax.set_xlabel('a')
  ax.set_ylabel('diagonal sum (units unchanged)')
  ax.set_title(f"{len(a['layers'])} ReLU layers (thin: each layer)",
               fontsize=8)
  ax.legend(fontsize=7)
  ax.grid(alpha=0.3)
  fig.suptitle(f"activations: {results['model']} on {results['dataset']}; "
               'rows: active (on) / inactive (off) at θf, columns: at the '
               'point', fontsize=8)
  fig.tight_layout()
  return plots.save(fig, folder, 'figure') + plots.curve_panels(results, folder,
                                                    'figure_curve')


# Fig. 29's six panels per noise: (title, left-axis metric, right-axis metric
# or None). The two Taylor definitions differ ~1000-fold in the second-order
# term (vec(Wn)ᵀH vec(Wn) ≈ 0.05 against εᵀH_λε ≈ 10), so each has its axis.
_LISTING2_PANELS = (
    ('error', 'error', None),
    ('CE loss', 'loss', None),
    ('mean Σ_c p_c(1 − p_c)', 'spread', None),
    ('tr H', 'trace', None),
    ('first-order term', 'first_listing', 'first_text'),
    ('second-order term', 'second_listing', 'second_text'))
_LISTING2_YLABELS = {
    'error': 'error (share of the 1,797 digits)',
    'loss': 'CE, log_loss (p clipped at eps)',
    'spread': 'mean Σ p(1 − p)', 'trace': 'tr H(Wn)',
    'first_listing': 'listing: ⟨∇L(Wn), Wn⟩',
    'second_listing': 'listing: vec(Wn)ᵀ H(Wn) vec(Wn)',
    'first_text': 'text: εᵀg_λ = ⟨∇L(Wn), ε⟩',
    'second_text': 'text: εᵀH_λε = vec(ε)ᵀ H(Wn) vec(ε)'}
_LISTING, _TEXT, _EXACT = 'C0', 'C3', 'C1'  # Colours: listing, text, exact.


def _listing2_lines(ax, lams, rows, draw, color, style='-') -> None:
  """Mean ± std over the draws of n (rows), the listing's draw dashed."""
  v = np.asarray([plots.clipped(row) for row in rows])
  mean = v.mean(0)
  ax.plot(lams, mean, style, color=color, lw=1.5)
  if len(v) > 1 and style == '-':
    ax.fill_between(lams, mean - v.std(0), mean + v.std(0), color=color,
                    alpha=0.2, lw=0)
  if draw is not None:
    ax.plot(lams, plots.clipped(draw), '--', color=color, lw=1)


def _colour_axis(ax, color, side: str) -> None:
  ax.tick_params(axis='y', colors=color, labelsize=7)
  ax.yaxis.label.set_color(color)
  ax.spines[side].set_color(color)


def _listing2_panel(ax, lams, m, draw, panel) -> Any:
  """One panel; returns its right (text definition) axis, or None."""
  title, left, right = panel
  _listing2_lines(ax, lams, m[left], draw.get(left), _LISTING)
  if left == 'loss':
    _listing2_lines(ax, lams, m['loss_unclipped'], None, _EXACT, ':')
  ax.set_ylabel(_LISTING2_YLABELS[left], fontsize=7)
  ax.set_title(title, fontsize=9)
  ax.set_xlabel('λ', fontsize=8)
  ax.tick_params(labelsize=7)
  ax.axvline(0.0, color='grey', lw=0.5)
  ax.grid(alpha=0.3)
  if right is None:
    return None
  twin = ax.twinx()
  _listing2_lines(twin, lams, m[right], draw.get(right), _TEXT)
  twin.set_ylabel(_LISTING2_YLABELS[right], fontsize=7)
  _colour_axis(ax, _LISTING, 'left')
  _colour_axis(twin, _TEXT, 'right')
  return twin


def _share_y(axes) -> None:
  """One y range for axes that show the same quantity."""
  lims = np.asarray([ax.get_ylim() for ax in axes])
  for ax in axes:
    ax.set_ylim(lims[:, 0].min(), lims[:, 1].max())


def _listing2_legend(fig, draws: int, seed) -> None:
  """The figure's one legend: what colours and line styles mean."""
  line = matplotlib.lines.Line2D
  handles = [
      line([], [], color='0.3', lw=1.5,
           label=f'mean ± std over {draws} draws of n'),
      line([], [], color='0.3', ls='--', lw=1,
           label=f'the listing\'s draw (np.random.seed({seed}))'),
      line([], [], color=_LISTING, lw=1.5,
           label='as Listing 2 computes it (Taylor terms: Wn in the '
                 'products; left axis)'),
      line([], [], color=_TEXT, lw=1.5,
           label='Taylor terms as the text defines them (ε = the noise, '
                 'g_λ, H_λ at Wn; right axis)'),
      line([], [], color=_EXACT, ls=':', lw=1.5,
           label='exact CE (unclipped), mean')]
  fig.legend(handles=handles, loc='lower center', ncol=3, fontsize=7,
             frameon=False)


def listing2_figure(results: dict[str, Any], folder: str) -> list[str]:
  """Fig. 29: one row of six panels per noise, Wn = W + λε.

  Error, CE (clipped as the listing's log_loss; the exact CE dotted),
  mean Σ p(1 − p), tr H, and the first- and second-order terms in both
  definitions (the listing's on the left axis, the text's on the right).
  The panels of one quantity share their y range across the rows.
  """
  r = results['listing2']
  lams, names = np.asarray(r['lambdas']), list(r['metrics'])
  draws = r.get('listing_draw', {})
  fig, axes = plt.subplots(len(names), len(_LISTING2_PANELS),
                           figsize=(18, 2.9 * len(names) + 1.0),
                           squeeze=False)
  twins = np.full(axes.shape, None, object)
  for i, name in enumerate(names):
    draw = draws.get('metrics', {}).get(name, {})
    for j, panel in enumerate(_LISTING2_PANELS):
      twins[i, j] = _listing2_panel(axes[i, j], lams, r['metrics'][name],
                                    draw, panel)
    axes[i, 0].annotate(f'ε = {name}', (-0.42, 0.5),
                        xycoords='axes fraction', rotation=90, ha='center',
                        va='center', fontsize=10, fontweight='bold')
  for j in range(axes.shape[1]):
    _share_y(axes[:, j])
    if twins[0, j] is not None:
      _share_y(twins[:, j])
  top = plots.error_top([v for m in r['metrics'].values()
                         for row in m['error'] for v in row])
  for ax in axes[:, 0]:
    ax.set_ylim(0.0, top)
  n_draws = len(next(iter(r['metrics'].values()))['error'])
  _listing2_legend(fig, n_draws, draws.get('seed', '?'))
  cfg = results.get('config', {})
  max_iter = cfg.get('listing2', {}).get('max_iter', '?')
  fig.suptitle(
      f"{results.get('kind', 'listing2')} (Fig. 29, Listing 2): "
      f"{results['model']} on all {results['dataset']} (sklearn lbfgs, "
      f"max_iter {max_iter}; no checkpoint), run "
      f"{epath.Path(folder).parent}, seed {cfg.get('seed', '?')}; "
      'Wn = W + λε', fontsize=10)
  fig.tight_layout(rect=(0, 0.05, 1, 1))
  return plots.save(fig, folder, 'figure')


def gradient_figure(results: dict[str, Any], folder: str) -> list[str]:
  """Appendix D.1: cosines with ∇L(θf), then the curves along ∇L, sign."""
  g = results['gradient']
  names = list(g['cosines'])
  fig, ax = plt.subplots(figsize=(4.5, 3))
  ax.bar(range(len(names)), plots.clipped(list(g['cosines'].values())))
  band = g['random_scale']
  ax.axhspan(-band, band, color='grey', alpha=0.3, label='±1/√D')
  ax.axhline(0.0, color='k', lw=0.5)
  ax.set_xticks(range(len(names)), names, rotation=20, fontsize=7)
  ax.set_ylabel('cosine with ∇L(θf)')
  ax.legend(fontsize=7)
  fig.tight_layout()
  return (plots.save(fig, folder, 'figure_cosine') +
          plots.curve_panels(results, folder))


def _no_checkpoint(config: Config) -> list[tuple[str, Any]]:
  """checkpoints(config) of a kind that measures no checkpoint."""
  del config
  return []


def _sweep_lams(p: Prober) -> np.ndarray:
  sw = p.config.sweep
  return np.linspace(sw.lam_min, sw.lam_max, sw.num_points)


# -------------------------------------------------------------- softmax_maps


def softmax_maps(p: Prober, _) -> dict[str, Any]:
  """Fig. 10: w_c + λ·s(w_c) of a digits softmax regression, as 8×8 maps.

  Besides the maps, their Pearson correlation with w_c (the pattern is
  kept where it stays high) and a curve of W + λ·s(W) on the same data
  (λ over config.sweep's range) put numbers on the figure.

  Args:
    p: the Prober.

  Returns:
    The curve, the maps, their correlations and a sample image per class.
  """
  c = p.config.softmax_maps
  x, y = theory.digits()
  w = theory.fit_softmax(x, y, c.max_iter)
  lams = np.asarray(c.lambdas, np.float64)
  maps = theory.sign_maps(w, c.classes, lams)
  corr_LxK = theory.pattern_correlation(maps, w, c.classes)
  curve_lams = _sweep_lams(p)
  m = [theory.softmax_metrics(w + lam * theory.listing_sign(w), x, y)
       for lam in curve_lams]
  # The exact CE: this curve is no listing's, so nothing is clipped.
  curve = common.curve('W + λ·s(W)', 'digits', curve_lams,
                       [r['loss_unclipped'] for r in m],
                       [r['error'] for r in m],
                       **common.curve_meta('sign', True, None, 'none'))
  p.bar.update(1)
  samples = [x[np.flatnonzero(y == k)[0]].reshape(8, 8) for k in c.classes]
  return {'model': 'softmax regression', 'dataset': 'digits',
          'curves': [curve],
          'maps': {'classes': list(c.classes), 'lambdas': lams.tolist(),
                   'maps': maps.tolist(), 'samples': np.stack(
                       samples).tolist(), 'correlation': corr_LxK.tolist(),
                   'mean_correlation': corr_LxK.mean(1).tolist()}}


def _softmax_maps_config() -> Config:
  return Config(dict(classes=(0, 2, 3, 4, 7), max_iter=5000,
                     lambdas=(-1.0, -0.5, -0.25, 0.0, 0.25, 0.5, 1.0)))


def _softmax_maps_validate(config: Config) -> None:
  c = config.softmax_maps
  if not c.classes or not c.lambdas:
    raise InputError('config.softmax_maps.classes and .lambdas must not be '
                     'empty.')


SOFTMAX_MAPS = Study(
    'softmax_maps', softmax_maps, _softmax_maps_config,
    validate=_softmax_maps_validate, figure=softmax_maps_figure,
    checkpoints=_no_checkpoint,
    fields=(checks.Field('softmax_maps.classes', int, lo=0, hi=9,
                         why='the digits classes'),
            checks.count('softmax_maps.max_iter'),
            checks.finite('softmax_maps.lambdas')))


# ------------------------------------------------------------------ listing1


def listing1(p: Prober, _) -> dict[str, Any]:
  """Fig. 27 (Listing 1): histograms of (w + λ·s(w))ᵀh and their means.

  Args:
    p: the Prober (its root key draws h and w).

  Returns:
    The histograms and, per λ, the sample mean, the closed-form mean
    (theory.listing1_mean), the std and the fraction of positive values
    (active ReLUs).
  """
  c = p.config.listing1
  lams = np.asarray(c.lambdas, np.float64)
  key = jax.random.fold_in(p.root, _LISTING1_SALT)
  values_LxN, h = theory.listing1(key, lams, c.dim, c.a, c.draws)
  counts, edges = theory.histograms(values_LxN, c.bins)
  mean = values_LxN.mean(1)
  p.bar.update(1)
  return {'model': 'ReLU simulation', 'dataset': 'synthetic', 'curves': [],
          'histograms': {'lambdas': lams.tolist(), 'counts': counts.tolist(),
                         'edges': edges.tolist()},
          'summary': {
              'lambdas': lams.tolist(), 'mean': mean.tolist(),
              'expected_mean': [theory.listing1_mean(h, c.a, lam)
                                for lam in lams],
              'std': values_LxN.std(1).tolist(),
              'active': (values_LxN > 0).mean(1).tolist(),
              'mean_increases': bool(np.all(np.diff(mean[np.argsort(
                  lams)]) > 0))}}


def _listing1_config() -> Config:
  return Config(dict(dim=512, a=0.1, draws=10_000, bins=500,
                     lambdas=(-1.0, -0.5, 0.0, 0.5, 1.0)))


def _listing1_validate(config: Config) -> None:
  if not config.listing1.lambdas:
    raise InputError('config.listing1.lambdas must not be empty.')


LISTING1 = Study(
    'listing1', listing1, _listing1_config, validate=_listing1_validate,
    figure=listing1_figure, checkpoints=_no_checkpoint,
    fields=(checks.count('listing1.dim'), checks.finite('listing1.a'),
            checks.count('listing1.draws'), checks.count('listing1.bins'),
            checks.finite('listing1.lambdas')))


# --------------------------------------------------------------- activations


def activations(p: Prober, s: Subject) -> dict[str, Any]:
  """Fig. 28: which ReLUs change state at θf + λ·d, d = NS(|ε|·sign(θf)).

  Choices: ε is config.activations.noise (G(0,1)) of seed 0, made sign-
  consistent and normalised by config.normalization (NS: ||d|| = ||θf||),
  the direction the valley studies sweep. The layers are every ReLU of the
  model (theory.feeds_relu: the BN outputs that feed a ReLU, plus the
  dense1/dense2 head layers of VGG-style nets; in a ResNet bn_stem, every
  block's bn1 and every block's output). The units are read on the first
  n_samples test images; θf and each point are evaluated alike, with BN
  statistics recalibrated as the sweep does (config.sweep.recal).

  Args:
    p: the Prober.
    s: config.checkpoint.

  Returns:
    Per λ = ±a and layer the 2×2 counts (rows active/inactive at θf,
    columns at the point), the pooled confusion fractions, the diagonal
    sums, and the valley curve along the same d.
  """
  c, norm = p.config.activations, p.config.normalization
  layers = theory.relu_layers(
      s.model, {'params': s.params, 'batch_stats': s.batch_stats},
      jax.ShapeDtypeStruct((1, *s.dataset.input_shape), jnp.float32))
  if not layers:
    name = s.train_config['model']['name']
    raise InputError(f'activations needs ReLUs; {name} has none '
                     '(theory.feeds_relu).')
  d = common.make_direction(p, s, 0, noise=c.noise, sign_consistent=True,
                            normalization=norm)
  amps = sorted(float(a) for a in c.amplitudes)
  lams = [-a for a in reversed(amps)] + amps
  counts = _confusions(p, s, d, lams, c.n_samples)
  out = _confusion_summary(counts, layers, lams, amps)
  name = directions.NOISE_LABELS[c.noise]
  curve = common.line(p, s, f'|{name}|·sign(θ)', 'activations', lambda _: d,
                      lams=sorted({0.0, *lams}),
                      **common.curve_meta(c.noise, True, None, norm))
  return {'curves': [curve], **out}


def _variables(s: Subject, recal, params) -> dict[str, Any]:
  """params with the BN statistics the sweep would evaluate them with."""
  stats = s.batch_stats
  if s.sweep.recal_x is not None:
    stats = recal(params, s.batch_stats, s.sweep.recal_x)
  return {'params': params, 'batch_stats': stats}


def _confusions(p: Prober, s: Subject, d, lams,
                n_samples: int) -> list[dict[str, np.ndarray]]:
  """Per λ: layer -> 2×2 counts over the first n_samples test images."""
  ds = s.dataset
  fn = theory.make_confusion(s.model, ds.mean, ds.std)
  recal = jax.jit(functools.partial(sweep.recalibrate, s.model,
                                    mean=ds.mean, std=ds.std))
  ref = _variables(s, recal, s.params)
  x = ds.x_test[:n_samples] if n_samples else ds.x_test
  bs = p.eval_batch_size()
  out = []
  for lam in lams:
    point = _variables(s, recal, tree.combine(s.params, [d], np.asarray(
        [lam], np.float32)))
    total = {}
    for i in range(0, len(x), bs):
      got = jax.device_get(fn(ref, point, x[i:i + bs]))
      total = {k: total.get(k, 0) + v.astype(np.int64) for k, v in got.items()}
    out.append(total)
    p.bar.update(1)
  return out


def _confusion_summary(counts, layers, lams, amps) -> dict[str, Any]:
  """The results.json entries of activations from the raw counts."""
  c_LxKx2x2 = np.asarray([[cnt[k] for k in layers] for cnt in counts])
  diag_LxK = (np.trace(c_LxKx2x2, axis1=2, axis2=3)
              / c_LxKx2x2.sum((2, 3)))
  pooled = c_LxKx2x2.sum(1)
  frac_Lx2x2 = pooled / pooled.sum((1, 2), keepdims=True)
  diag_all = np.trace(frac_Lx2x2, axis1=1, axis2=2)
  by_lam = dict(zip(lams, diag_all.tolist()))
  return {'activations': {
      'lambdas': list(lams), 'layers': layers,
      'counts': c_LxKx2x2.tolist(), 'confusion': frac_Lx2x2.tolist(),
      'diagonal': diag_LxK.tolist(), 'diagonal_all': diag_all.tolist()},
          'summary': {'amplitudes': amps,
                      'positive': [by_lam[a] for a in amps],
                      'negative': [by_lam[-a] for a in amps]}}


def _activations_config() -> Config:
  return Config(dict(noise='gaussian', amplitudes=(0.2, 0.4, 0.6, 0.8, 1.0),
                     n_samples=500))


def _activations_validate(config: Config) -> None:
  directions.check_noise(config.activations.noise)
  if not config.activations.amplitudes:
    raise InputError('config.activations.amplitudes must not be empty.')


ACTIVATIONS = Study(
    'activations', activations, _activations_config,
    validate=_activations_validate, figure=activations_figure,
    fields=(checks.positive('activations.amplitudes',
                            why='λ = ±a for each amplitude a'),
            checks.count('activations.n_samples', 0,
                         why='0 = the whole test split')))


# ------------------------------------------------------------------ listing2


# The two noises of Fig. 29, one row each: (sign-consistent, name).
_LISTING2_NOISES = ((False, 'G(0,1)'), (True, '|G(0,1)|·s(W)'))


def listing2(p: Prober, _) -> dict[str, Any]:
  """Fig. 29 (Listing 2): W + λ·n and W + λ·|n|·s(W) on the digits.

  config.seeds draws of n (the listing makes one); every metric of
  theory.LISTING2_DEFINITIONS is kept per draw: the CE as the listing's
  sklearn log_loss computes it ('loss', clipped) beside the exact one
  ('loss_unclipped'), and the first- and second-order terms as the listing
  computes them (Wn in the products) and as the text defines them (ε).
  Per noise and metric, `favoured` is the fraction of (draw, λ ≥ 0.5) pairs
  where the metric is lower at +λ than at −λ (0.5: no side favoured), and
  `asymmetry` the mean of theory.asymmetry over draws (> 0: the positive
  side is lower); both compare signed values, so for the slope first_text
  (< 0 left of the minimum, > 0 right of it) they say nothing about the
  valley. `listing_draw` repeats every metric on the listing's own
  draw, np.random.seed(config.seed); randn(*W.shape) (theory.listing_noise),
  the curve the paper's figure shows.

  Args:
    p: the Prober.

  Returns:
    One curve (error, clipped CE) per noise and the per-draw metrics.
  """
  c = p.config.listing2
  x, y = theory.digits()
  w = theory.fit_softmax(x, y, c.max_iter)
  lams = np.linspace(c.lam_min, c.lam_max, c.num_points)
  n_listing = theory.listing_noise(w.shape, p.config.seed)
  curves, metrics, favoured, asymmetry, draw = [], {}, {}, {}, {}
  findings = []
  for sc, name in _LISTING2_NOISES:
    runs = [theory.listing2_curve(w, _listing2_noise(p, w, seed, sc), lams,
                                  x, y) for seed in range(p.config.seeds)]
    per = {k: np.asarray([r[k] for r in runs]) for k in
           theory.LISTING2_METRICS}
    curves.append(common.curve(name, 'digits', lams, per['loss'],
                               per['error'],
                               **common.curve_meta('gaussian', sc, None,
                                                   'none')))
    metrics[name] = {k: v.tolist() for k, v in per.items()}
    favoured[name], asymmetry[name] = _sides(lams, per)
    findings += _listing2_findings(name, sc, lams, per)
    draw[name] = theory.listing2_curve(
        w, _sign_consistent(n_listing, w) if sc else n_listing, lams, x, y)
    p.bar.update(1)
  return {'model': 'softmax regression', 'dataset': 'digits',
          'curves': curves, 'findings': findings,
          'listing2': {'lambdas': lams.tolist(),
                       'definitions': dict(theory.LISTING2_DEFINITIONS),
                       'log_loss_eps': theory.LOG_LOSS_EPS,
                       'metrics': metrics, 'favoured': favoured,
                       'asymmetry': asymmetry,
                       'listing_draw': {'seed': p.config.seed,
                                        'metrics': draw},
                       'weight_abs_mean': float(np.abs(w).mean())}}


def _listing2_findings(name: str, sc: bool, lams,
                       per: dict[str, np.ndarray]) -> list[dict[str, Any]]:
  """Per metric (error, clipped CE): theory.asymmetry of each draw, with a
  t interval over the draws (the test set is the listing's whole digits
  set, the same in every draw). Sign-consistent noise predicts a lower
  positive side (> 0), plain noise any difference."""
  out = []
  for metric in ('error', 'loss'):
    values = [theory.asymmetry(lams, r) for r in per[metric]]
    if not np.all(np.isfinite(values)):
      continue
    out.append(stats.finding(
        f"{name}: {metric} " + ('lower on the positive side' if sc else
                                'sides differ'),
        stats.summary(values), expect='positive' if sc else 'nonzero',
        statistic=f'theory.asymmetry of the {metric} (λ ≥ 0.5)'))
  return out


def _sides(lams, per: dict[str, np.ndarray]) -> tuple[dict, dict]:
  """(favoured, asymmetry) per metric, averaged over the draws."""
  fav = {k: float(np.mean([theory.favoured(lams, r) for r in v]))
         for k, v in per.items()}
  asym = {k: float(np.mean([theory.asymmetry(lams, r) for r in v]))
          for k, v in per.items()}
  return fav, asym


def _sign_consistent(n: np.ndarray, w: np.ndarray) -> np.ndarray:
  return np.abs(n) * theory.listing_sign(w)


def _listing2_noise(p: Prober, w: np.ndarray, seed: int,
                    sign_consistent: bool) -> np.ndarray:
  """n ~ G(0,1) shaped like W (draw `seed`), or |n|·s(W)."""
  key = directions.direction_key(p.root, seed,
                                 list(directions.NOISES).index('gaussian'))
  n = np.asarray(jax.random.normal(key, w.shape), np.float64)
  return _sign_consistent(n, w) if sign_consistent else n


def _listing2_config() -> Config:
  return Config(dict(max_iter=500, lam_min=-1.0, lam_max=1.0, num_points=21))


def _listing2_validate(config: Config) -> None:
  c = config.listing2
  common.check_range(c.lam_min, c.lam_max, c.num_points, 'config.listing2')


LISTING2 = Study(
    'listing2', listing2, _listing2_config, validate=_listing2_validate,
    figure=listing2_figure, checkpoints=_no_checkpoint,
    fields=(checks.count('listing2.max_iter'),
            checks.finite('listing2.lam_min'),
            checks.finite('listing2.lam_max'),
            checks.count('listing2.num_points')))


# ------------------------------------------------------------------ gradient


def gradient(p: Prober, s: Subject) -> dict[str, Any]:
  """Appendix D.1: cos(sign(θf), ∇L(θf)) and a curve along ∇L(θf).

  ∇L is the gradient of the mean CE over the whole training split in eval
  mode (θf's running BN statistics; only params are differentiated). The
  cosines of ∇L with θf, with the sign-consistent and the plain G(0,1)
  directions of seed 0 (as the valley studies normalise them) are given
  beside it; a random direction's is of the order 1/√D. The curves sweep
  ∇L and sign(θf), each normalised by config.normalization, over
  config.sweep's λ range. slope_sign = ⟨∇L, s·d⟩ for the swept sign
  direction d: first_order_gap = slope_sign·(λmax − λmin) is what the
  gradient alone predicts for L(λmax) − L(λmin), loss_gap what the curve
  measures.

  Args:
    p: the Prober.
    s: config.checkpoint.

  Returns:
    Two curves, the cosines and the first-order comparison.
  """
  c, norm, theta = p.config.gradient, p.config.normalization, s.params
  g = _train_gradient(p, s)
  sc = common.make_direction(p, s, 0, noise='gaussian', sign_consistent=True,
                             normalization=norm)
  plain = common.make_direction(p, s, 0, noise='gaussian',
                                normalization=norm)
  cosines = {'sign(θf)': theory.cosine(tree.sign(theta), g),
             'θf': theory.cosine(theta, g),
             '|G(0,1)|·sign(θf)': theory.cosine(sc, g),
             'G(0,1)': theory.cosine(plain, g)}
  d = normalize.normalize(g, theta, norm)
  d_sign = common.make_direction(p, s, 0, special='sign', normalization=norm)
  curves = [
      common.line(p, s, '∇L(θf)', '∇L(θf)', lambda _: d, scale=c.scale,
                  **common.curve_meta('gradient', False, None, norm)),
      common.line(p, s, 'sign(θf)', 'sign(θf)', lambda _: d_sign,
                  scale=c.scale, **common.curve_meta('sign', True, None,
                                                      norm))]
  size = tree.size(theta)
  slope = float(optax.tree.vdot(g, d_sign)) * c.scale
  lams = curves[1]['lambdas']
  return {'curves': curves,
          'gradient': {'cosines': cosines, 'norm': float(tree.norm(g)),
                       'num_params': size,
                       'random_scale': 1.0 / math.sqrt(size),
                       'slope_sign': slope,
                       'first_order_gap': slope * (lams[-1] - lams[0]),
                       'loss_gap': curves[1]['loss'][-1] - curves[1][
                           'loss'][0]}}


def _train_gradient(p: Prober, s: Subject):
  """∇L(θf) over the whole training split, batched and sharded."""
  ds = s.dataset
  n_dev = p.mesh.shape[sharding.DATA]
  bs = -(-min(p.eval_batch_size(), len(ds.y_train)) // n_dev)
  data = sweep.make_batches(ds.x_train, ds.y_train, bs * n_dev, p.mesh)
  fn = jax.jit(functools.partial(theory.dataset_gradient, s.model,
                                 mean=ds.mean, std=ds.std))
  g = fn(s.params, s.batch_stats, data.x, data.y, data.w)
  p.bar.update(1)
  return g


def _gradient_config() -> Config:
  return Config(dict(scale=1.0))


GRADIENT = Study(
    'gradient', gradient, _gradient_config, figure=gradient_figure,
    fields=(checks.positive('gradient.scale', why=common.SCALE_WHY),))

# This family's studies, in the order of the registry (probe/registry.py).
STUDIES = (SOFTMAX_MAPS, LISTING1, ACTIVATIONS, LISTING2, GRADIENT,)
