"""matplotlib figures in the style of the paper (PNG + PDF).

Every 1D study is drawn as panels of curves: one column per panel key (noise,
group, checkpoint, ...), test error on the top row and CE loss below. Curves
that are sign-consistent are solid, plain noise dashed. Non-finite values are
drawn clipped to the panel's largest finite value.
"""

import io
from typing import Any

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


def save(fig, folder: str, name: str) -> list[str]:
  paths = []
  for ext in ('png', 'pdf'):
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
