"""FedSim's figures: the clients' label heat map and accuracy against rounds."""

from typing import Any

import matplotlib.ticker
import numpy as np

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
