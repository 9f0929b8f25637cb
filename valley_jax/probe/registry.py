"""Every probe study, by kind, in one explicit dict.

The order below is the order of `STUDIES`, hence of the probe's field table
(docs/config-fields.md) and of `own_fields()`. It is written here, not
implied by the order modules happen to be imported in.

* valley: noise_types, sign_ratio, special, groups (Figs 3-6).
* runs: bn_init, hparams, interpolate (Figs 7-9), which compare runs.
* surface: a 2D loss surface (Li et al.).
* soups: accuracy along θA→θB per epoch (Fig. 11).
* demos: the theory demos softmax_maps, listing1, activations, listing2,
  gradient (Sect. 5, Appendix D).
* curvature: curvature along the valley curves.
* wedges: cuts (planes, radial cuts, wedge widths) and paths (trajectory
  geometry and curvature) of Fort & Jastrzebski 2019.
* simplex: simplex (raw and trained simplexes of N runs) and ensembles
  (independent runs, ESPRO, one trajectory, the complex) of Fort &
  Jastrzebski 2019 and Benton et al. 2021.
* subspace_training: subspace (training in random subspaces; the wedge
  model of Fort & Jastrzebski 2019).
* align: pairs of runs before and after weight matching (Git Re-Basin):
  sign consistency against the interpolation barrier.
"""

from valley_jax import checks
from valley_jax.errors import InputError
from valley_jax.probe.studies import (align, curvature, demos, runs, simplex,
                                      soups, subspace_training, surface,
                                      valley, wedges)
from valley_jax.probe.study import Study

_FAMILIES = (valley, runs, surface, soups, demos, curvature, wedges,
             simplex, subspace_training, align)


def _build() -> dict[str, Study]:
  out: dict[str, Study] = {}
  for family in _FAMILIES:
    for study in family.STUDIES:
      if study.name in out:
        raise InputError(f'Two studies are named {study.name!r}.')
      out[study.name] = study
  return out


# kind -> Study.
STUDIES: dict[str, Study] = _build()
KINDS = tuple(STUDIES)
# Kinds that compare several runs; the others probe config.checkpoint.
MULTI_RUN = tuple(k for k, s in STUDIES.items() if s.multi_run)


def own_fields() -> list[checks.Field]:
  """checks.PROBE_BASE_FIELDS, then every study's fields, in study order:
  the probe config without its embedded training config."""
  return checks.PROBE_BASE_FIELDS + [f for s in STUDIES.values()
                                     for f in s.fields]


def fields() -> list[checks.Field]:
  """own_fields() and those of the embedded training config."""
  return own_fields() + checks.nested('train', checks.TRAIN_FIELDS)
