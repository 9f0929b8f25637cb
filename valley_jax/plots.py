"""matplotlib figures in the style of the paper (PNG + PDF by default).

The file formats of `save` are PNG and PDF unless a caller picks others with
`formats(...)` (the probe writes config.figure_formats, PNG by default).

Every 1D study is drawn as panels of curves: one column per panel key (noise,
group, checkpoint, ...), test error on the top row and CE loss below. Curves
that are sign-consistent are solid, plain noise dashed. Non-finite values are
drawn clipped to the panel's largest finite value.
"""

import contextlib
import io
from typing import Any, Sequence

from etils import epath
import matplotlib
import matplotlib.ticker

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top,wrong-import-position
import numpy as np  # pylint: disable=g-import-not-at-top,wrong-import-position

from valley_jax import outputs  # pylint: disable=g-import-not-at-top,wrong-import-position


def clipped(values: list[float | None]) -> np.ndarray:
  """None/inf/nan replaced by the largest finite value (or 0)."""
  v = np.array([np.nan if x is None else x for x in values], np.float64)
  finite = v[np.isfinite(v)]
  cap = finite.max() if finite.size else 0.0
  return np.where(np.isfinite(v), v, cap)


# The formats `save` writes; set with `formats`.
_FORMATS = ['png', 'pdf']


@contextlib.contextmanager
def formats(exts: Sequence[str]):
  """Within the context, `save` writes these formats (e.g. ('png',)).

  Not thread-local: one thread draws at a time (the probe's figure worker).

  Args:
    exts: file extensions matplotlib can write: 'png', 'pdf', 'svg'.

  Yields:
    None.
  """
  old = list(_FORMATS)
  _FORMATS[:] = list(exts)
  try:
    yield
  finally:
    _FORMATS[:] = old


def save(fig, folder: str, name: str) -> list[str]:
  """Writes fig as <folder>/<name>.<ext> for every current format.

  Args:
    fig: a matplotlib figure (closed afterwards).
    folder: the folder (local or gs://).
    name: the file name without extension.

  Returns:
    The paths written.
  """
  paths = []
  for ext in list(_FORMATS):
    path = epath.Path(folder) / f'{name}.{ext}'
    buf = io.BytesIO()
    fig.savefig(buf, format=ext, bbox_inches='tight', dpi=120)
    outputs.write_bytes(path, buf.getvalue())  # Atomic: no torn figures.
    paths.append(str(path))
  plt.close(fig)
  return paths


def _panel_keys(curves: list[dict[str, Any]]) -> list[str]:
  return list(dict.fromkeys(c.get('panel', '') for c in curves))


def _draw(ax, curve: dict[str, Any], metric: str, color) -> None:
  lams = np.asarray(curve['lambdas'])
  y = clipped(curve[metric])
  style = '-' if curve.get('sign_consistent') else '--'
  ax.plot(lams, y, style, color=color, label=curve['label'], lw=1.5)
  std = curve.get(f'{metric}_std')
  if std is not None:
    s = clipped(std)
    ax.fill_between(lams, y - s, y + s, color=color, alpha=0.2)


def curve_panels(results: dict[str, Any], folder: str,
                 name: str = 'figure') -> list[str]:
  """The generic figure of a 1D study: one panel per curve['panel'].

  results['layout'] may set 'metrics' (default error and loss, one row block
  each) and 'ncols' (panels per row; default all in one row).
  """
  curves = results['curves']
  keys = _panel_keys(curves)
  layout = results.get('layout', {})
  metrics = layout.get('metrics', ['error', 'loss'])
  ncols = min(layout.get('ncols', len(keys)), len(keys))
  rows_per_metric = -(-len(keys) // ncols)
  fig, axes = plt.subplots(rows_per_metric * len(metrics), ncols,
                           figsize=(2.6 * ncols, 2.4 * rows_per_metric *
                                    len(metrics)), squeeze=False)
  colors = plt.get_cmap('tab10')
  for m, metric in enumerate(metrics):
    for j, key in enumerate(keys):
      ax = axes[m * rows_per_metric + j // ncols, j % ncols]
      mine = [c for c in curves if c.get('panel', '') == key]
      for n, c in enumerate(mine):
        _draw(ax, c, metric, colors(n % 10))
      ax.axvline(0.0, color='grey', lw=0.5)
      ax.set_title(key, fontsize=8)
      ax.set_ylabel('test error' if metric == 'error' else 'CE loss',
                    fontsize=8)
      ax.tick_params(labelsize=7)
      ax.grid(alpha=0.3)
      if m == 0 and len(mine) > 1 and (j % ncols == 0 or len(keys) <= 8):
        ax.legend(fontsize=6)
  fig.suptitle(f"{results['kind']}: {results['model']} on "
               f"{results['dataset']} (x: λ)", fontsize=10)
  fig.tight_layout()
  return save(fig, folder, name)


def sign_ratio(results: dict[str, Any], folder: str) -> list[str]:
  """Fig. 4: mean error of the positive and negative halves against r."""
  s = results['summary']
  fig, ax = plt.subplots(figsize=(4, 3.2))
  ax.plot(s['ratios'], clipped(s['positive']), 'o-', label='λ ∈ [0, 1]')
  ax.plot(s['ratios'], clipped(s['negative']), 's-', label='λ ∈ [-1, 0]')
  ax.set_xlabel('sign consistency ratio r')
  ax.set_ylabel('mean test error')
  ax.legend()
  ax.grid(alpha=0.3)
  return save(fig, folder, 'figure_ratio') + curve_panels(results, folder)


def histograms(results: dict[str, Any], folder: str) -> list[str]:
  """Fig. 7 (right): one BN layer's weights at init and at convergence."""
  hs = results['histograms']
  fig, axes = plt.subplots(1, len(hs), figsize=(3.2 * len(hs), 2.8),
                           squeeze=False)
  for ax, h in zip(axes[0], hs):
    ax.hist(h['init'], bins=30, alpha=0.6, label='init')
    ax.hist(h['final'], bins=30, alpha=0.6, label='converged')
    ax.set_title(f"{h['label']}: {h['layer']}", fontsize=9)
    ax.legend(fontsize=7)
  return save(fig, folder, 'figure_hist') + curve_panels(results, folder)


def interpolation(results: dict[str, Any], folder: str) -> list[str]:
  """Fig. 8: the curve, group mean/std and sign consistency ratios."""
  st = results['statistics']
  names = list(st['groups'])
  fig, axes = plt.subplots(1, 4, figsize=(15, 3.2))
  c = results['curves'][0]
  axes[0].plot(c['lambdas'], clipped(c['error']), 'k-')
  axes[0].set_xlabel('λ: (1−λ)θA + λθB')
  axes[0].set_ylabel('test error')
  x = np.arange(len(names))
  for ax, key in zip(axes[1:3], ('mean', 'std')):
    ax.bar(x - 0.2, [st['groups'][g]['a'][key] for g in names], 0.4,
           label='θA')
    ax.bar(x + 0.2, [st['groups'][g]['b'][key] for g in names], 0.4,
           label='θB')
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
  ax.legend(fontsize=7)
  fig.tight_layout()
  return save(fig, folder, 'figure')


def surface(results: dict[str, Any], folder: str) -> list[str]:
  """A 2D loss / error surface as filled contours."""
  s = results['surface']
  a, b = np.asarray(s['alphas']), np.asarray(s['betas'])
  fig, axes = plt.subplots(1, 2, figsize=(9, 3.8))
  for ax, metric in zip(axes, ('loss', 'error')):
    z = clipped(np.asarray(s[metric], dtype=object).ravel().tolist())
    cs = ax.contourf(a, b, z.reshape(len(a), len(b)).T, levels=20)
    fig.colorbar(cs, ax=ax)
    ax.plot([0], [0], 'r*')
    ax.set_xlabel('α (direction 1)')
    ax.set_ylabel('β (direction 2)')
    ax.set_title(metric)
  fig.tight_layout()
  return save(fig, folder, 'figure')


def _save_prefix(fig, path_prefix: str) -> list[str]:
  """save() into the folder of `path_prefix`, named by its last part."""
  prefix = epath.Path(path_prefix)
  prefix.parent.mkdir(parents=True, exist_ok=True)
  return save(fig, str(prefix.parent), prefix.name)


def label_heatmap(hist, path_prefix: str, title: str = '') -> list[str]:
  """Samples of each class on each client (the FL partition), as a heat map.

  Args:
    hist: [K, C] counts (data.label_histogram, or its JSON list).
    path_prefix: writes path_prefix.png and path_prefix.pdf.
    title: the figure's title.
  Returns:
    The paths written.
  """
  hist_KxC = np.asarray(hist)
  k, c = hist_KxC.shape
  fig, ax = plt.subplots(figsize=(min(1.5 + 0.35 * c, 12),
                                  min(1.5 + 0.12 * k, 12)))
  im = ax.imshow(hist_KxC, aspect='auto', cmap='viridis',
                 interpolation='nearest')
  fig.colorbar(im, ax=ax, label='samples')
  ax.set_xlabel('class')
  ax.set_ylabel('client')
  if c <= 20:
    ax.set_xticks(range(c))
  ax.yaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
  ax.tick_params(labelsize=7)
  if title:
    ax.set_title(title, fontsize=9)
  return _save_prefix(fig, path_prefix)


def fed_accuracy(rounds_by_label: dict[str, Any],
                 path_prefix: str) -> list[str]:
  """Test accuracy of the global model against rounds, one line per run.

  Args:
    rounds_by_label: label -> (rounds, accuracy), two equal-length sequences;
      None (a non-finite value in the JSON) leaves a gap.
    path_prefix: writes path_prefix.png and path_prefix.pdf.
  Returns:
    The paths written.
  """
  fig, ax = plt.subplots(figsize=(4.5, 3.2))
  colors = plt.get_cmap('tab10')
  for n, (label, (rounds, acc)) in enumerate(rounds_by_label.items()):
    y = np.array([np.nan if a is None else a for a in acc], np.float64)
    ax.plot(np.asarray(rounds), y, '-', color=colors(n % 10), label=label,
            lw=1.5)
  ax.set_xlabel('round')
  ax.set_ylabel('test accuracy')
  ax.grid(alpha=0.3)
  if len(rounds_by_label) > 1:
    ax.legend(fontsize=7)
  return _save_prefix(fig, path_prefix)


def soups(results: dict[str, Any], folder: str) -> list[str]:
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
    ax.plot(c['lambdas'], 1.0 - clipped(c['error']), '-o', ms=2.5,
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
    ax_ssr.plot(x, clipped([r[key] for r in rows]), f'{marker}-', ms=4,
                label=label)
  ax_ssr.set_xticks(x, [str(r['epoch']) for r in rows])
  ax_ssr.set_xlabel('epoch')
  ax_ssr.set_ylabel('sign consistency ratio')
  ax_ssr.grid(alpha=0.3)
  ax_gain = ax_ssr.twinx()
  ax_gain.plot(x, clipped([r['gain'] for r in rows]), 'kd--', ms=4,
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
  return save(fig, folder, 'figure')


# ------------------------------------------- theory demos (studies/theory.py)


def _symmetric_map(ax, image, title: str = '') -> None:
  """An image on a diverging map centred on zero, without ticks."""
  v = np.asarray(image, np.float64)
  lim = float(np.abs(v).max()) or 1.0
  ax.imshow(v, cmap='RdBu_r', vmin=-lim, vmax=lim, interpolation='nearest')
  ax.set_xticks([])
  ax.set_yticks([])
  if title:
    ax.set_title(title, fontsize=8)


def softmax_maps(results: dict[str, Any], folder: str) -> list[str]:
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
  return save(fig, folder, 'figure') + curve_panels(results, folder,
                                                    'figure_curve')


def listing1(results: dict[str, Any], folder: str) -> list[str]:
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
  return save(fig, folder, 'figure')


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


def activations(results: dict[str, Any], folder: str) -> list[str]:
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
  return save(fig, folder, 'figure') + curve_panels(results, folder,
                                                    'figure_curve')


_LISTING2_TITLES = {'error': 'error', 'loss': 'CE loss',
                    'spread': 'mean Σ p(1 − p)', 'trace': 'tr(H)',
                    'first': 'first-order term', 'second': 'second-order term'}


def listing2(results: dict[str, Any], folder: str) -> list[str]:
  """Fig. 29: the six metrics of Listing 2 against λ, one panel each."""
  r = results['listing2']
  lams = np.asarray(r['lambdas'])
  fig, axes = plt.subplots(2, 3, figsize=(10, 5.4))
  for ax, (key, title) in zip(axes.ravel(), _LISTING2_TITLES.items()):
    for n, (name, m) in enumerate(r['metrics'].items()):
      v = np.asarray([clipped(row) for row in m[key]])
      style = '-' if n else '--'
      ax.plot(lams, v.mean(0), style, color=f'C{n}', label=name, lw=1.5)
      if len(v) > 1:
        ax.fill_between(lams, v.mean(0) - v.std(0), v.mean(0) + v.std(0),
                        color=f'C{n}', alpha=0.2)
    ax.axvline(0.0, color='grey', lw=0.5)
    ax.set_title(title, fontsize=9)
    ax.set_xlabel('λ', fontsize=8)
    ax.tick_params(labelsize=7)
    ax.grid(alpha=0.3)
  axes[0, 0].legend(fontsize=7)
  fig.suptitle('Listing 2: softmax regression on digits, W + λ·noise',
               fontsize=9)
  fig.tight_layout()
  return save(fig, folder, 'figure')


def gradient(results: dict[str, Any], folder: str) -> list[str]:
  """Appendix D.1: cosines with ∇L(θf), then the curves along ∇L, sign."""
  g = results['gradient']
  names = list(g['cosines'])
  fig, ax = plt.subplots(figsize=(4.5, 3))
  ax.bar(range(len(names)), clipped(list(g['cosines'].values())))
  band = g['random_scale']
  ax.axhspan(-band, band, color='grey', alpha=0.3, label='±1/√D')
  ax.axhline(0.0, color='k', lw=0.5)
  ax.set_xticks(range(len(names)), names, rotation=20, fontsize=7)
  ax.set_ylabel('cosine with ∇L(θf)')
  ax.legend(fontsize=7)
  fig.tight_layout()
  return save(fig, folder, 'figure_cosine') + curve_panels(results, folder)


# ----------------------------------------------------------------- curvature


def _curvature_scale(ax, curves: list[dict[str, Any]], metric: str) -> None:
  """Log y when every value is positive (curvature spans decades)."""
  v = np.concatenate([clipped(c[metric]) for c in curves])
  if v.size and np.all(v > 0):
    ax.set_yscale('log')


def _shade_flat_side(ax, curves: list[dict[str, Any]]) -> None:
  """Shades the half of λ where the sign-consistent curve errs less."""
  for c in curves:
    pos, neg = c.get('positive_error'), c.get('negative_error')
    if not c.get('sign_consistent') or pos is None or neg is None:
      continue
    lams = np.asarray(c['lambdas'])
    lo, hi = (0.0, lams.max()) if pos <= neg else (lams.min(), 0.0)
    if hi > lo:
      ax.axvspan(lo, hi, color='tab:green', alpha=0.08, lw=0)
    return


def curvature_track(results: dict[str, Any], folder: str) -> list[str]:
  """Test error, CE loss, dᵀHd/‖d‖² and tr(H) against λ (kind curvature).

  Sign-consistent curves solid, plain dashed; the flat side of the
  sign-consistent curve (its half of lower mean error) is shaded green and
  the top eigenvalue at θf, when measured, is in the curvature's title.

  Args:
    results: the kind's results ('curves' with 'curvature' and 'trace').
    folder: where figure.png and figure.pdf go.
  Returns:
    The paths written.
  """
  curves = results['curves']
  rows = (('error', 'test error'), ('loss', 'CE loss'),
          ('curvature', 'dᵀHd / ‖d‖²'), ('trace', 'tr(H), Hutchinson'))
  fig, axes = plt.subplots(1, len(rows), figsize=(3.2 * len(rows), 3.0))
  colors = plt.get_cmap('tab10')
  for ax, (metric, title) in zip(axes, rows):
    _shade_flat_side(ax, curves)
    for n, c in enumerate(curves):
      _draw(ax, c, metric, colors(n % 10))
    if metric in ('curvature', 'trace'):
      _curvature_scale(ax, curves, metric)
    top = results.get('top_eigenvalue')
    if metric == 'curvature' and top and top.get('value') is not None:
      title += f" (top eigenvalue at θf: {top['value']:.3g})"
    ax.axvline(0.0, color='grey', lw=0.5)
    ax.set_title(title, fontsize=8)
    ax.set_xlabel('λ', fontsize=8)
    ax.tick_params(labelsize=7)
    ax.grid(alpha=0.3)
  axes[0].legend(fontsize=6)
  data = results.get('hessian_data', {})
  fig.suptitle(f"{results['kind']}: {results['model']} on "
               f"{results['dataset']} (H on {data.get('samples', '?')} "
               f"{data.get('split', '')} examples; green: flat side)",
               fontsize=9)
  fig.tight_layout()
  return save(fig, folder, 'figure')
