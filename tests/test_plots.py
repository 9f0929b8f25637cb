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
  curves = [{'label': f'r={r}', 'ratio': r, 'lambdas': [-1.0, 0.0, 1.0],
             'error': [0.2 + r / 5, 0.0, 0.2 - r / 5], 'loss': [1, 0, 1],
             'error_ci': [[0.1, 0.5], [0.0, 0.01], [0.0, 0.3]],
             'seeds': 3, 'n_examples': 360} for r in (0.0, 0.5, 1.0)]
  valley.sign_ratio_figure({
      'summary': {'ratios': [0.0, 0.5, 1.0], 'positive': [0.2, 0.1, 0.05],
                  'negative': [0.2, 0.3, 0.4],
                  'positive_ci': [[0.1, 0.3], [0.05, 0.15], [0.0, 0.1]],
                  'negative_ci': [[0.1, 0.3], [0.2, 0.4], [0.3, 0.5]],
                  'noise': 'gaussian', 'scale': 1.0},
      'curves': curves, 'model': 'cnn', 'dataset': 'digits'}, str(tmp_path))
  ax = figs[0].axes[0]
  assert ax.get_xlabel() == 'fraction r of elements given sign(θf)'
  (top,) = ax.child_axes
  assert top.get_xlabel() == 'sign consistency with θf, (1 + r)/2'
  assert 'G(0,1)' in ax.get_title() and 's = 1' in ax.get_title()
  # The curves: coloured by r on a sequential map (r = 0 and r = 1 differ),
  # a colour bar for r, the title naming the noise and s.
  curves_fig = figs[1]
  colors = {tuple(l.get_color()) for l in curves_fig.axes[0].get_lines()
            if l.get_xdata()[0] == -1.0}  # The curves, not the λ = 0 line.
  assert len(colors) == 3
  assert curves_fig.axes[-1].get_ylabel() == 'r: fraction given sign(θf)'
  assert 'ε ~ G(0,1)' in curves_fig._suptitle.get_text()
  assert 's = 1' in curves_fig._suptitle.get_text()


def _curve(noise, scale, sc, error):
  return {'direction': noise, 'scale': scale, 'sign_consistent': sc,
          'lambdas': [-1.0, 0.0, 1.0], 'error': error, 'label': noise,
          'panel': f'{noise}, s={scale}'}


def test_noise_types_in_the_papers_layout(monkeypatch, tmp_path):
  """Rows are noises, columns scales; each panel has its own y-limits,
  which reach at least ERROR_FLOOR; one legend for the figure."""
  from valley_jax.probe.studies import valley  # pylint: disable=g-import-not-at-top
  figs = _drawn(monkeypatch)
  curves = [_curve(n, s, sc, [0.01, 0.0, e if s > 0.2 else e / 10])
            for n, e in (('gaussian', 0.003), ('ones', 0.5))
            for s in (0.2, 1.0, 2.0) for sc in (False, True)]
  valley.noise_types_figure({'curves': curves, 'model': 'cnn',
                             'dataset': 'digits', 'provenance': [
                                 {'workdir': 'runs/x', 'epoch': 3}]},
                            str(tmp_path))
  (fig,) = figs
  axes = [a for a in fig.axes]
  assert len(axes) == 6
  assert [a.get_title() for a in axes[:3]] == ['s = 0.2', 's = 1', 's = 2']
  assert axes[0].get_ylabel().startswith('G(0,1)')
  assert axes[3].get_ylabel().startswith('{1}')
  # Row 1 tops at the floor (its errors are below one image of 360); each
  # panel has its own limits, so the s = 0.2 panel of {1} is not flattened.
  assert {a.get_ylim() for a in axes[:3]} == {(0.0, 0.05 * 1.08)}
  assert axes[3].get_ylim() == (0.0, 0.05 * 1.08)
  assert {a.get_ylim() for a in axes[4:]} == {(0.0, 0.5 * 1.08)}
  assert len(fig.legends) == 1 and not any(a.get_legend() for a in axes)
  assert 'runs/x @ epoch 3' in fig._suptitle.get_text()


def test_curve_panels_have_one_legend_for_the_figure(monkeypatch, tmp_path):
  """Labels repeated across panels are one entry of one figure legend."""
  figs = _drawn(monkeypatch)
  curves = [dict(_curve('gaussian', 1.0, sc, [0.3, 0.0, 0.1]),
                 panel=group, label='|G|·sign(θ)' if sc else 'G',
                 loss=[1.0, 0.1, 0.5])
            for group in ('ALL', 'CLF', 'BN') for sc in (False, True)]
  plots.curve_panels({'kind': 'groups', 'model': 'm', 'dataset': 'd',
                      'curves': curves}, str(tmp_path))
  (fig,) = figs
  assert not any(a.get_legend() for a in fig.axes)
  (legend,) = fig.legends
  # Each label once, then what the line styles mean.
  assert [t.get_text() for t in legend.get_texts()] == [
      'G', '|G|·sign(θ)', plots.STYLE_NOTES['-'], plots.STYLE_NOTES['--']]


def test_runs_label_names_every_run_once():
  """A multi-run title names each run; training-seed replicas are counted."""
  prov = [{'workdir': f'runs/{r}{s}', 'epoch': 30}
          for r in ('ones', 'gauss') for s in ('', '_seed1', '_seed2')]
  assert plots.runs_label({'provenance': prov}) == (
      ', runs: runs/ones, runs/gauss @ 30, each × 3 training seeds')
  assert plots.runs_label({'provenance': prov[:1]}) == (
      ', runs/ones @ epoch 30')
