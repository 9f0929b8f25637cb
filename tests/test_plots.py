"""plots.py: the figure formats and the provenance footer."""

from valley_jax import plots


def test_figure_formats(tmp_path):
  res = {'kind': 'k', 'model': 'm', 'dataset': 'd', 'curves': [
      {'label': 'a', 'panel': 'p', 'lambdas': [0, 1], 'loss': [1, 2],
       'error': [0.1, 0.2]}]}
  with plots.formats(('pdf',)):
    assert [p.rsplit('.', 1)[1] for p in plots.curve_panels(
        res, str(tmp_path))] == ['pdf']
  assert plots.current_formats() == ('png', 'pdf')


def test_footer_names_checkpoint_fingerprint_and_commit(tmp_path):
  prov = [{'workdir': 'runs/default', 'epoch': 30,
           'fingerprint': '0123456789abcdef'}]
  line = plots.provenance_line(prov, 'git ' + 'a' * 40 + '+dirty')
  assert line == ('runs/default @ epoch 30, fingerprint 0123456789ab; '
                  'git aaaaaaaaaaaa+dirty')
  fig, _ = plots.plt.subplots()
  with plots.footer(line), plots.formats(('png',)):
    plots.save(fig, str(tmp_path), 'f')
  assert [t.get_text() for t in fig.texts] == [line]
  fig, _ = plots.plt.subplots()
  plots.save(fig, str(tmp_path), 'g')  # Outside the context: no footer.
  assert not fig.texts
