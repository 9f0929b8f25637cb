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


def _drawn(monkeypatch):
  """The figures `plots.save` is given, kept for inspection."""
  figs = []
  monkeypatch.setattr(plots, 'save', lambda fig, folder, name: figs.append(
      fig) or [f'{folder}/{name}.png'])
  return figs


def test_sign_ratio_axis_says_what_r_is(monkeypatch, tmp_path):
  """r is the fraction of elements given sign(θf); the measured sign
  consistency is (1 + r)/2, on the top axis."""
  from valley_jax.probe.studies import valley  # pylint: disable=g-import-not-at-top
  figs = _drawn(monkeypatch)
  monkeypatch.setattr(plots, 'curve_panels', lambda *a: [])
  valley.sign_ratio_figure({'summary': {'ratios': [0.0, 0.5, 1.0],
                                        'positive': [0.2, 0.1, 0.05],
                                        'negative': [0.2, 0.3, 0.4]}},
                           str(tmp_path))
  ax = figs[0].axes[0]
  assert ax.get_xlabel() == 'fraction r of elements given sign(θf)'
  (top,) = ax.child_axes
  assert top.get_xlabel() == 'sign consistency with θf, (1 + r)/2'
