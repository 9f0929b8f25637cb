"""A 2D loss surface of one checkpoint (Li et al., 2018).

Kind: surface. The grid spans two independent random directions, filter-
normalised by default; its two axes are also written as 1D curves.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import ml_collections
import numpy as np

from valley_jax import checks, directions, landscape, normalize, plots
from valley_jax.studies import Study, common, register

if TYPE_CHECKING:  # Only for annotations: probe_lib imports the studies.
  from valley_jax.probe_lib import Prober

Config = ml_collections.ConfigDict


def surface(p: Prober, s: common.Subject) -> dict[str, Any]:
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
  axis, coeffs = landscape.grid_coeffs(c.lam_min, c.lam_max, c.num_points)
  out = s.sweep(s.params, s.batch_stats, ds, coeffs)
  n = len(axis)
  grid = {k: out[k].reshape(n, n) for k in ('loss', 'error')}
  curves = []
  if 0.0 in axis:  # The two axis cross-sections as 1D curves.
    mid = int(np.argmin(np.abs(axis)))
    for name, sl in (('α axis', np.s_[:, mid]), ('β axis', np.s_[mid, :])):
      curves.append(common.curve(
          name, name, axis, grid['loss'][sl], grid['error'][sl],
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


register(Study(
    'surface', surface, _config, validate=_validate, figure=plots.surface,
    fields=(checks.finite('surface.lam_min'),
            checks.finite('surface.lam_max'),
            checks.count('surface.num_points'))))
