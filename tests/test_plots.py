"""plots.py: the figure formats."""

from valley_jax import plots


def test_figure_formats(tmp_path):
  res = {'kind': 'k', 'model': 'm', 'dataset': 'd', 'curves': [
      {'label': 'a', 'panel': 'p', 'lambdas': [0, 1], 'loss': [1, 2],
       'error': [0.1, 0.2]}]}
  with plots.formats(('pdf',)):
    assert [p.rsplit('.', 1)[1] for p in plots.curve_panels(
        res, str(tmp_path))] == ['pdf']
  assert plots.current_formats() == ('png', 'pdf')
