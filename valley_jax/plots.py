"""matplotlib figures in the style of the paper (PNG + PDF by default).

The file formats of `save` are PNG and PDF unless a caller picks others with
`formats(...)` (the probe writes config.figure_formats, PNG by default).

Every 1D study is drawn as panels of curves: one column per panel key (noise,
group, checkpoint, ...), test error on the top row and CE loss below. Curves
that are sign-consistent are solid, plain noise dashed; one legend for the
figure, below the panels. Non-finite values are
drawn clipped to the panel's largest finite value. Error panels of a row
share their y-limits, from 0 to at least ERROR_FLOOR; titles name the run
and checkpoint, and `footer` adds a line naming the checkpoint's fingerprint
and the code version under a figure.
"""

import contextlib
import contextvars
import io
import re
from typing import Any, Sequence

import matplotlib
import matplotlib.ticker
from etils import epath

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top,wrong-import-position
import numpy as np  # pylint: disable=g-import-not-at-top,wrong-import-position

from valley_jax import outputs


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


# A line `save` writes under every figure (what was measured, by which code).
_FOOTER: contextvars.ContextVar[str] = contextvars.ContextVar('footer',
                                                              default='')


@contextlib.contextmanager
def footer(text: str):
  """Within the context (this thread), `save` writes `text` under every
  figure, e.g. the checkpoint, its fingerprint and the code version."""
  token = _FOOTER.set(text)
  try:
    yield
  finally:
    _FOOTER.reset(token)


def provenance_line(provenance: list[dict[str, Any]], code: str) -> str:
  """'runs/default @ epoch 30, fingerprint 1a2b3c4d5e6f · git 0123abcd'.

  >>> provenance_line([{'workdir': 'r', 'epoch': 3, 'fingerprint': 'abc'}],
  ...                 'git 0123456789abcdef')
  'r @ epoch 3, fingerprint abc · git 0123456789ab'
  """
  parts = []
  for p in provenance:
    if 'weights' in p:
      parts.append(f"{p['weights']}, sha256 {p['sha256'][:12]}")
    else:
      parts.append(f"{p['workdir']} @ epoch {p['epoch']}, fingerprint "
                   f"{str(p['fingerprint'])[:12]}")
  if len(parts) > 3:
    parts = parts[:2] + [f'... {len(parts) - 2} more checkpoints']
  head, _, rest = code.partition(' ')
  short = f'{head} {rest[:12]}{"+dirty" if rest.endswith("+dirty") else ""}'
  return '; '.join(parts + [short]) if parts else short


def runs_label(results: dict[str, Any]) -> str:
  """checkpoint_label, except that a study of several runs names each
  (', runs: runs/a, runs/b @ 30'); replicas over training seeds
  (W_seed1, ...) are counted, not listed (', each × 3 training seeds')."""
  prov = [p for p in results.get('provenance') or [] if 'workdir' in p]
  if len(prov) < 2:
    return checkpoint_label(results)
  bases = [re.sub(r'_seed\d+$', '', str(p['workdir']).rstrip('/'))
           for p in prov]
  names = list(dict.fromkeys(bases))
  epochs = sorted({str(p['epoch']) for p in prov})
  seeds = len(bases) // len(names)
  label = ', runs: ' + ', '.join(names) + f" @ {'/'.join(epochs)}"
  return label + (f', each × {seeds} training seeds' if seeds > 1 else '')


def checkpoint_label(results: dict[str, Any]) -> str:
  """', runs/default @ epoch 30' for a title ('' without a checkpoint)."""
  prov = results.get('provenance') or []
  if prov and 'workdir' in prov[0]:
    return f", {prov[0]['workdir']} @ epoch {prov[0]['epoch']}"
  ck = results.get('checkpoint') or {}
  if ck.get('weights'):
    return f", {ck['weights']}"
  if ck.get('workdir'):
    return f", {ck['workdir']} @ epoch {ck.get('epoch')}"
  return ''


def current_formats() -> tuple[str, ...]:
  """The formats `save` writes now (PNG and PDF outside a `formats` block)."""
  return tuple(_FORMATS)


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
  if _FOOTER.get():
    # Below everything drawn so far (x labels included), in figure units.
    box = fig.get_tightbbox(fig.canvas.get_renderer())
    height, width = fig.get_figheight(), fig.get_figwidth()
    fig.text(box.x0 / width, box.y0 / height - 0.01, _FOOTER.get(),
             fontsize=5.5, color='0.35', ha='left', va='top')
  for ext in list(_FORMATS):
    path = epath.Path(folder) / f'{name}.{ext}'
    buf = io.BytesIO()
    fig.savefig(buf, format=ext, bbox_inches='tight', dpi=120)
    outputs.write_bytes(path, buf.getvalue())  # Atomic: no torn figures.
    paths.append(str(path))
  plt.close(fig)
  return paths


def panel_keys(curves: list[dict[str, Any]]) -> list[str]:
  return list(dict.fromkeys(c.get('panel', '') for c in curves))


def band(curve: dict[str, Any], metric: str) -> tuple[np.ndarray,
                                                       np.ndarray] | None:
  """The band drawn around a curve: the 95 % interval of each point's error
  (curve['error_ci']: seeds and test examples, inside [0, 1]) where the
  curve has one, else mean ± std over seeds, cut at the bounds the metric
  cannot cross (0 for both, 1 for an error); None without either.

  Args:
    curve: a results.json curve.
    metric: 'error' or 'loss'.

  Returns:
    (low, high) per point, or None.
  """
  ci = curve.get(f'{metric}_ci')
  if ci is not None:
    lo_hi = np.array([[np.nan, np.nan] if c is None else
                      [np.nan if v is None else v for v in c] for c in ci],
                     np.float64)
    return lo_hi[:, 0], lo_hi[:, 1]
  std = curve.get(f'{metric}_std')
  if std is None:
    return None
  y, s = clipped(curve[metric]), clipped(std)
  top = 1.0 if metric == 'error' else np.inf
  return np.maximum(y - s, 0.0), np.minimum(y + s, top)


# The line styles of a curve's direction, explained in every legend.
STYLE_NOTES = {'-': 'solid: sign-consistent (every element has sign(θf))',
               '--': 'dashed: not sign-consistent'}


def draw_curve(ax, curve: dict[str, Any], metric: str, color) -> None:
  lams = np.asarray(curve['lambdas'])
  y = clipped(curve[metric])
  style = '-' if curve.get('sign_consistent') else '--'
  ax.plot(lams, y, style, color=color, label=curve['label'], lw=1.5)
  b = band(curve, metric)
  if b is not None:
    ax.fill_between(lams, b[0], b[1], color=color, alpha=0.2, lw=0)


def curve_panels(results: dict[str, Any], folder: str,
                 name: str = 'figure') -> list[str]:
  """The generic figure of a 1D study: one panel per curve['panel'].

  results['layout'] may set 'metrics' (default error and loss, one row block
  each) and 'ncols' (panels per row; default all in one row).
  """
  curves = results['curves']
  keys = panel_keys(curves)
  layout = results.get('layout', {})
  metrics = layout.get('metrics', ['error', 'loss'])
  ncols = min(layout.get('ncols', len(keys)), len(keys))
  rows_per_metric = -(-len(keys) // ncols)
  fig, axes = plt.subplots(rows_per_metric * len(metrics), ncols,
                           figsize=(2.6 * ncols, 2.4 * rows_per_metric *
                                    len(metrics)), squeeze=False)
  # One colour per label across the figure, so that a legend entry names one
  # colour (the same noise in every group panel is one entry).
  labels = list(dict.fromkeys(c['label'] for c in curves))
  cmap = plt.get_cmap('tab10' if len(labels) <= 10 else 'tab20')
  colors = {label: cmap(i % cmap.N) for i, label in enumerate(labels)}
  for m, metric in enumerate(metrics):
    for j, key in enumerate(keys):
      ax = axes[m * rows_per_metric + j // ncols, j % ncols]
      mine = [c for c in curves if c.get('panel', '') == key]
      for c in mine:
        draw_curve(ax, c, metric, colors[c['label']])
      ax.axvline(0.0, color='grey', lw=0.5)
      ax.set_title(key, fontsize=8)
      ax.set_ylabel('test error' if metric == 'error' else 'CE loss',
                    fontsize=8)
      ax.tick_params(labelsize=7)
      ax.grid(alpha=0.3)
    if metric == 'error':  # Each row of panels: one y range from 0.
      for r in range(rows_per_metric):
        row_keys = keys[r * ncols:(r + 1) * ncols]
        top = error_top([v for c in curves if c.get('panel', '') in row_keys
                         for v in clipped(c['error'])])
        for ax in axes[m * rows_per_metric + r, :len(row_keys)]:
          ax.set_ylim(0.0, top)
  fig.suptitle(f"{results['kind']}: {results['model']} on "
               f"{results['dataset']}{runs_label(results)} (x: λ)"
               f"{band_note(curves)}", fontsize=10)
  fig.tight_layout()
  figure_legend(fig, axes.ravel(), styles={
      '-' if c.get('sign_consistent') else '--' for c in curves})
  return save(fig, folder, name)


def band_note(curves: list[dict[str, Any]]) -> str:
  """What a figure's bands are, for its title ('' when none is drawn)."""
  if any(c.get('error_ci') for c in curves):
    n = max(c.get('seeds', 1) for c in curves)
    what = ('training runs' if any(len(c.get('runs') or ()) > 1
                                   for c in curves) else 'draw(s)')
    loss = ('; loss: ± std' if any(c.get('loss_std') for c in curves) else
            '')
    return (f'\nbands: error 95% interval over {n} {what} and '
            f"{max(c.get('n_examples') or 0 for c in curves)} test examples"
            f'{loss}')
  if any(c.get('error_std') for c in curves):
    return '\nbands: ± std over draws'
  return ''


def figure_legend(fig, axes, styles=()) -> None:
  """One legend for the figure, below its panels: every label drawn, once
  (a label repeated across panels, as a noise in every group, is one
  entry), then what each line style in `styles` means (STYLE_NOTES). No
  legend when only one curve is drawn."""
  entries: dict[str, Any] = {}
  for ax in axes:
    for handle, label in zip(*ax.get_legend_handles_labels()):
      entries.setdefault(label, handle)
  if len(entries) < 2:
    return
  for style in sorted(styles, key=len):
    if style in STYLE_NOTES:
      entries[STYLE_NOTES[style]] = plt.Line2D([], [], color='grey',
                                               ls=style, lw=1.2)
  fig.legend(list(entries.values()), list(entries), loc='upper center',
             bbox_to_anchor=(0.5, 0.0), ncol=min(len(entries), 6),
             fontsize=7, frameon=False)


# Error axes reach at least this high, so that a change of one or two test
# images (0.3% of digits' 360) does not fill a panel and look like structure.
ERROR_FLOOR = 0.05


def error_top(values) -> float:
  """The top of an error axis: the largest value (or ERROR_FLOOR) + 8%."""
  finite = [float(v) for v in values if v is not None and np.isfinite(v)]
  return max([ERROR_FLOOR] + finite) * 1.08


def save_prefix(fig, path_prefix: str) -> list[str]:
  """save() into the folder of `path_prefix`, named by its last part."""
  prefix = epath.Path(path_prefix)
  prefix.parent.mkdir(parents=True, exist_ok=True)
  return save(fig, str(prefix.parent), prefix.name)


