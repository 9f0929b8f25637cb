"""probe/studies/curvature.py: the curvature kind end to end, and its bad
input."""

import json

import jax
import numpy as np
import pytest

from valley_jax import defaults
from valley_jax.core import hessian, sweep
from valley_jax.probe import prober
from valley_jax.probe import runner as probe_runner
from valley_jax.probe.studies import common
from valley_jax.probe.studies import curvature as curvature_study


def _kind_config(checkpoint_dir):
  c = defaults.probe_config(checkpoint_dir)
  c.kind = 'curvature'
  c.sweep.recal_samples = 200
  c.sweep.recal_batch_size = 200
  c.sweep.eval_batch_size = 360
  c.curvature.update(num_points=5, probes=4, samples=256, batch_size=128,
                     power_iters=2)
  return c


@pytest.mark.slow
def test_kind_end_to_end(trained_mlp, tmp_path):
  c = _kind_config(trained_mlp)
  c.curvature.through_bn = True
  c.curvature.update(spectrum_steps=4, spectrum_probes=2,
                     spectrum_lams=(0.5,))
  path = probe_runner.run(c, str(tmp_path))['curvature']
  with open(path) as f:
    res = json.load(f)
  assert res['kind'] == 'curvature'
  assert res['hessian_data'] == {'split': 'train', 'samples': 256}
  assert set(res['top_eigenvalue']) == {'value', 'residual', 'iters'}
  plain, sc = res['curves']
  assert (plain['sign_consistent'], sc['sign_consistent']) == (False, True)
  for cv in res['curves']:
    assert len(cv['curvature']) == len(cv['trace']) == len(cv['trace_sem'])
    assert len(cv['curvature']) == len(cv['lambdas']) == 5
    assert {'loss', 'error', 'positive_curvature', 'negative_trace'} <= set(cv)
  # The eigenvalue density at θf and at λ = 0.5 of both curves.
  spec = res['spectrum']
  assert [pt['lambda'] for pt in spec] == [0.0, 0.5, 0.5]
  for pt in spec:
    assert np.asarray(pt['nodes']).shape == (2, 4)
    np.testing.assert_allclose(np.sum(pt['weights'], 1), 1.0, rtol=1e-5)
    assert pt['top'] == max(max(n) for n in pt['nodes'])
    grid = np.asarray(pt['grid'])
    np.testing.assert_allclose(np.trapezoid(pt['density'], grid), 1.0,
                               rtol=1e-3)
  # PNG by default; config.figure_formats='png,pdf' adds the PDF.
  assert res['figures'] == ['figure.png', 'figure_spectrum.png']
  assert (tmp_path / 'curvature' / 'figure.png').exists()
  assert not (tmp_path / 'curvature' / 'figure.pdf').exists()
  # The same probes at every λ: the two curves meet at λ = 0.
  assert plain['trace'][2] == pytest.approx(sc['trace'][2], rel=1e-5)
  # The finding, with a margin: sign-consistent noise is flatter at λ > 0.
  assert sc['trace'][1] > 1.5 * sc['trace'][3]  # λ = -0.5 and 0.5.
  # Findings (issue 25): error halves and dᵀHd/‖d‖² halves per curve; the
  # curvature's statistic is the per-seed difference of its halves.
  claims = [f['claim'] for f in res['findings']]
  assert len(claims) == 4 and 'dᵀHd/‖d‖²' in claims[3]
  diff = np.mean(sc['curvature'][2:]) - np.mean(sc['curvature'][:3])
  assert res['findings'][3]['mean'] == pytest.approx(diff, rel=1e-6)
  assert not any(k.startswith('_') for k in sc)
  _check_recalibrated_point(c, trained_mlp, sc)
  # through_bn: the statistics differentiated too (tests/test_hessian.py
  # checks the value): another number than with them held fixed.
  for cv in res['curves']:
    assert len(cv['curvature_through_bn']) == len(cv['trace_through_bn']) == 5
    assert not np.allclose(cv['curvature_through_bn'], cv['curvature'],
                           rtol=1e-3)


def _check_recalibrated_point(c, trained_mlp, curve):
  """The point λ = 1 equals curvature at θ + s·d with statistics
  recalibrated there (sweep.recalibrate), computed here directly."""
  p = prober.Prober(c)
  s = p.subject(trained_mlp)
  d = common.make_direction(p, s, 0, noise='gaussian', sign_consistent=True)
  theta = jax.tree.map(lambda a, b: a + b, s.params, d)
  stats = jax.jit(sweep.recalibrate, static_argnums=0)(
      s.model, theta, s.batch_stats, s.sweep.recal_x)
  assert not np.allclose(stats['bn1']['mean'], s.batch_stats['bn1']['mean'])
  track = curvature_study.make_track(p, s)
  np.testing.assert_allclose(
      track.curv.directional(theta, stats, d, track.data),
      curve['curvature'][-1], rtol=1e-3)


@pytest.mark.parametrize('key,value,match', [
    ('split', 'validation', r'config\.curvature\.split'),
    ('probes', 0, r'config\.curvature\.probes=0'),
    ('lam_min', 3.0, 'Empty or invalid'),
    ('noise', 'cauchy', 'Unknown noise'),
])
def test_kind_bad_input_fails_first(tmp_path, monkeypatch, key, value,
                                    match):
  monkeypatch.setattr(hessian, 'make_curvature', _no_compile)
  c = _kind_config(str(tmp_path / 'no_run'))  # Names are checked first.
  c.curvature[key] = value
  with pytest.raises(ValueError, match=match):
    probe_runner.run(c, str(tmp_path))
  assert not list(tmp_path.iterdir())


def _no_compile(*a, **k):
  raise AssertionError('compiled before the input was checked')
