"""fed/figures.py: the partition heat map and accuracy against rounds."""

from conftest import PARTITION_LABELS as LABELS, dirichlet_parts as _dirichlet

from valley_jax.data import partition as part
from valley_jax.fed import figures


def test_figures_write_png_and_pdf(tmp_path):
  hist = part.label_histogram(LABELS, _dirichlet(0.5), 10)
  paths = figures.label_heatmap(hist.tolist(), str(tmp_path / 'fig' / 'labels'),
                                title='α = 0.5')
  paths += figures.accuracy(
      {'fedavg': ([1, 2, 3], [0.2, 0.5, 0.7]),
       'fedsign': ([1, 2, 3], [0.3, None, 0.8])},
      str(tmp_path / 'accuracy'))
  assert sorted(p.rsplit('/', 1)[-1] for p in paths) == [
      'accuracy.pdf', 'accuracy.png', 'labels.pdf', 'labels.png']
  for p in paths:
    with open(p, 'rb') as f:
      assert len(f.read()) > 1000
