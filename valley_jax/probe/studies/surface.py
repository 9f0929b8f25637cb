"""A 2D loss surface of one checkpoint (Li et al., 2018).

Kind: surface. The grid spans two independent random directions, filter-
normalised by default; its two axes are also written as 1D curves.

With config.surface.directions='pca' the plane is that of the top two
principal components of the run's path instead (θ_e − θ_final over the
kept epochs, directions.pca; Li et al. 2018, Sect. 7), and the figure draws
the path projected on it. The two unit directions are scaled by one length
R, the largest |coordinate| of the path, so both axes have the same units
(α = 1 is R away from θ_final) and a grid over [-1, 1] holds the path (use
lam_min < -1 or lam_max > 1 for a margin).
"""

from __future__ import annotations

from typing import Any

import ml_collections
import numpy as np

import jax

from valley_jax import checkpoint, checks, plots
from valley_jax.core import directions, normalize, sweep
from valley_jax.errors import InputError
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
    path = s.get('trajectory')
    if path:
      xy = np.asarray(path['coords'])
      ax.plot(xy[:, 0], xy[:, 1], 'w.-', lw=1, ms=4,
              label='path (kept epochs)')
      for e, (x, y) in zip(path['epochs'], xy):
        ax.annotate(str(e), (x, y), fontsize=6, color='white',
                    xytext=(2, 2), textcoords='offset points')
    ax.plot([0], [0], 'r*', label='θf')
    ax.set_xlabel(_axis_label(s, 0))
    ax.set_ylabel(_axis_label(s, 1))
    ax.set_title(names[metric], fontsize=9)
  axes[0].legend(fontsize=7, loc='upper right')
  fig.suptitle(f"surface: {results['model']} on {results['dataset']}"
               f"{plots.checkpoint_label(results)}", fontsize=9)
  fig.tight_layout()
  return plots.save(fig, folder, 'figure')


def _axis_label(s: dict[str, Any], i: int) -> str:
  name = ('α', 'β')[i]
  path = s.get('trajectory')
  if not path:
    return f'{name} (direction {i + 1})'
  return (f"{name}: PC{i + 1} ({path['explained'][i]:.0%} of the path's "
          f"variance), units of {path['scale']:.3g}")


def trajectory_plane(p: Prober, s: Subject, epochs=()) -> tuple[list[Any],
                                                                dict]:
  """The PCA plane of s's run and the path on it (module doc).

  Args:
    p: the Prober (its mesh).
    s: the subject; its run's kept epochs before s.epoch are the path.
    epochs: the epochs to use (default: every kept one before s.epoch).

  Returns:
    (the two directions, scaled by R; {'epochs', 'coords' (in units of R),
    'explained', 'scale' (R)}).
  """
  kept = [e for e in checkpoint.epochs(s.workdir) if e < int(s.epoch)]
  use = [int(e) for e in epochs] or kept
  if missing := sorted(set(use) - set(kept)):
    raise InputError(f'config.surface.pca_epochs: epochs {missing} are not '
                     f'kept before epoch {s.epoch} of {s.workdir}; kept: '
                     f'{kept}.')
  path = [checkpoint.restore_model(s.workdir, e, p.mesh)[0]['params']
          for e in use]
  dirs, explained, coords = directions.pca(path, s.params, k=2)
  scale = float(np.abs(coords).max())
  dirs = [jax.tree.map(lambda x: x * scale, d) for d in dirs]
  return dirs, {'epochs': use, 'coords': (coords / scale).tolist(),
                'explained': explained.tolist(), 'scale': scale}


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
  path = None
  if c.directions == 'pca':
    ds, path = trajectory_plane(p, s, c.pca_epochs)
  else:
    ds = [common.make_direction(p, s, 0, noise=c.noise,
                                normalization=c.normalization,
                                index=1000 + i) for i in range(2)]
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
    meta = (common.curve_meta(c.noise, False, None, c.normalization)
            if path is None else common.curve_meta('pca', normalization=
                                                   'none'))
    for name, sl in (('α axis', np.s_[:, mid]), ('β axis', np.s_[mid, :])):
      e = None if e_grid is None else e_grid[(slice(None), *sl)][None]
      curves.append(common.curve(
          name, name, axis, grid['loss'][sl], grid['error'][sl],
          error_SxNxP=e, n_examples=out['n'], **meta))
  res = {'alphas': axis.tolist(), 'betas': axis.tolist(),
         'loss': grid['loss'].tolist(), 'error': grid['error'].tolist()}
  if path is not None:
    res['trajectory'] = path
  return {'curves': curves, 'surface': res}


def _config() -> Config:
  # directions: 'random' (two noises) or 'pca' (the run's path; then
  # noise and normalization are unused). pca_epochs: () = every kept epoch
  # before the measured one.
  return Config(dict(noise='gaussian', normalization='filter', lam_min=-1.0,
                     lam_max=1.0, num_points=21, directions='random',
                     pca_epochs=()))


def _validate(config: Config) -> None:
  s = config.surface
  directions.check_noise(s.noise)
  normalize.check_normalization(s.normalization)
  common.check_range(s.lam_min, s.lam_max, s.num_points, 'config.surface')
  if s.directions not in DIRECTIONS:
    raise InputError(f'config.surface.directions={s.directions!r}; choose '
                     f'one of {DIRECTIONS}.')


DIRECTIONS = ('random', 'pca')


SURFACE = Study(
    'surface', surface, _config, validate=_validate, figure=surface_figure,
    fields=(checks.finite('surface.lam_min'),
            checks.finite('surface.lam_max'),
            checks.count('surface.num_points'),
            checks.count('surface.pca_epochs', 0)))

# This family's studies, in the order of the registry (probe/registry.py).
STUDIES = (SURFACE,)
