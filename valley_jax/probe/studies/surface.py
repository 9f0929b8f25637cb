"""A 2D loss surface of one checkpoint (Li et al., 2018).

Kind: surface. The grid spans two independent random directions, filter-
normalised by default; its two axes are also written as 1D curves.
"""

from __future__ import annotations

from typing import Any

import ml_collections
import numpy as np

from valley_jax import checks, plots
from valley_jax.core import directions, normalize, sweep
from valley_jax.plots import plt
from valley_jax.probe.prober import Prober, Subject
from valley_jax.probe.studies import common
from valley_jax.probe.study import Study

Config = ml_collections.ConfigDict


# -------------------------------------------------------------------- figures


def surface_figure(results: dict[str, Any], folder: str) -> list[str]:
  """A 2D loss / error surface as filled contours."""
  s = results['surface']
  a, b = np.asarray(s['alphas']), np.asarray(s['betas'])
  fig, axes = plt.subplots(1, 2, figsize=(9, 3.8))
  names = {'loss': 'test CE loss', 'error': 'test error'}
  for ax, metric in zip(axes, ('loss', 'error')):
    z = plots.clipped(np.asarray(s[metric], dtype=object).ravel().tolist())
    cs = ax.contourf(a, b, z.reshape(len(a), len(b)).T, levels=20)
    fig.colorbar(cs, ax=ax, label=names[metric])
    ax.plot([0], [0], 'r*', label='θf')
    ax.set_xlabel('α (direction 1)')
    ax.set_ylabel('β (direction 2)')
    ax.set_title(names[metric], fontsize=9)
  axes[0].legend(fontsize=7, loc='upper right')
  fig.suptitle(f"surface: {results['model']} on {results['dataset']}"
               f"{plots.checkpoint_label(results)}", fontsize=9)
  fig.tight_layout()
  return plots.save(fig, folder, 'figure')


def surface(p: Prober, s: Subject) -> dict[str, Any]:
  """A 2D surface along two independent (filter-normalised) directions.

  Args:
    p: the Prober.
    s: config.checkpoint.

  Returns:
    The grid of loss and error, and its two axes as curves (when λ = 0 is
    on the grid).
  """
  c = p.config.surface
  ds = [common.make_direction(p, s, 0, noise=c.noise,
                              normalization=c.normalization, index=1000 + i)
        for i in range(2)]
  axis, coeffs = sweep.grid_coeffs(c.lam_min, c.lam_max, c.num_points)
  out = common.per_example(s.sweep, s.params, s.batch_stats, ds, coeffs)
  n = len(axis)
  grid = {k: out[k].reshape(n, n) for k in ('loss', 'error')}
  # Each example's error on the grid, for the axes' intervals.
  e_grid = (None if out['error_NxP'] is None else
            out['error_NxP'].reshape(-1, n, n))
  curves = []
  if 0.0 in axis:  # The two axis cross-sections as 1D curves.
    mid = int(np.argmin(np.abs(axis)))
    for name, sl in (('α axis', np.s_[:, mid]), ('β axis', np.s_[mid, :])):
      e = None if e_grid is None else e_grid[(slice(None), *sl)][None]
      curves.append(common.curve(
          name, name, axis, grid['loss'][sl], grid['error'][sl],
          error_SxNxP=e, n_examples=out['n'],
          **common.curve_meta(c.noise, False, None, c.normalization)))
  return {'curves': curves,
          'surface': {'alphas': axis.tolist(), 'betas': axis.tolist(),
                      'loss': grid['loss'].tolist(),
                      'error': grid['error'].tolist()}}


def _config() -> Config:
  return Config(dict(noise='gaussian', normalization='filter', lam_min=-1.0,
                     lam_max=1.0, num_points=21))


def _validate(config: Config) -> None:
  s = config.surface
  directions.check_noise(s.noise)
  normalize.check_normalization(s.normalization)
  common.check_range(s.lam_min, s.lam_max, s.num_points, 'config.surface')


SURFACE = Study(
    'surface', surface, _config, validate=_validate, figure=surface_figure,
    fields=(checks.finite('surface.lam_min'),
            checks.finite('surface.lam_max'),
            checks.count('surface.num_points')))

# This family's studies, in the order of the registry (probe/registry.py).
STUDIES = (SURFACE,)
