"""FedSim's figures: the clients' label heat map, accuracy against rounds,
and a table's curves with bands over seeds."""

from typing import Any

import matplotlib.ticker
import numpy as np
from scipy import stats

from valley_jax import plots
from valley_jax.plots import plt


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
  return plots.save_prefix(fig, path_prefix)


def accuracy(rounds_by_label: dict[str, Any],
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
  return plots.save_prefix(fig, path_prefix)


def table_curves(table: dict[str, Any], path_prefix: str) -> list[str]:
  """A table's test accuracy against rounds: one panel per α, one line per
  algorithm at its selected grid point, the mean over seeds with a band of
  its 95 % Student-t interval over seeds, clipped to [0, 1] (no band for
  one seed).

  Args:
    table: table.json's content (valley_jax.fed.runner.summarize).
    path_prefix: writes path_prefix.png and path_prefix.pdf.
  Returns:
    The paths written.
  """
  rows = table['rows']
  fig, axes = plt.subplots(1, len(rows), figsize=(4.2 * len(rows), 3.3),
                           squeeze=False, sharey=True)
  colors = plt.get_cmap('tab10')
  for ax, row in zip(axes[0], rows):
    for n, name in enumerate(table['algorithms']):
      chosen = row[name]['selected'] or {}
      curves = [c['curve'] for c in table['cells']
                if c['algorithm'] == name and c['alpha'] == row['alpha'] and
                c['point'] == chosen and c['curve']['round']]
      if not curves:
        continue
      length = min(len(c['round']) for c in curves)
      acc = np.array([[np.nan if a is None else a
                       for a in c['test_accuracy'][:length]] for c in curves],
                     np.float64)
      rounds = np.asarray(curves[0]['round'][:length])
      mean = acc.mean(0)
      label = name + ''.join(f' {k}={v:g}' if isinstance(v, (int, float))
                             else f' {k}={v}' for k, v in chosen.items())
      ax.plot(rounds, mean, '-', color=colors(n % 10), lw=1.4, label=label)
      if len(curves) > 1:
        half = (stats.t.ppf(0.975, len(curves) - 1) * acc.std(0, ddof=1) /
                np.sqrt(len(curves)))
        ax.fill_between(rounds, np.clip(mean - half, 0, 1),
                        np.clip(mean + half, 0, 1), color=colors(n % 10),
                        alpha=0.18, lw=0)
    ax.set_title(f"{row['dataset']}, α = {row['alpha']:g}", fontsize=9)
    ax.set_xlabel('round')
    ax.grid(alpha=0.3)
    # A legend per panel: each α has its own selected grid values.
    ax.legend(fontsize=6, loc='lower right')
  axes[0][0].set_ylabel('test accuracy (mean, 95 % t interval)')
  p = table['protocol']
  fig.suptitle(f"selection: {p['selection']}; seeds {p['seeds']}; "
               f"{p['code']}", fontsize=8)
  return plots.save_prefix(fig, path_prefix)
