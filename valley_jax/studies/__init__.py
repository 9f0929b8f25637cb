"""The probe's studies: one module per family, one registry.

A study is one kind of `config.kind`. It registers, in its own module, the
function that measures it, its config block (`config.<name>`, with
defaults), the checks of that block and its numeric fields. probe_lib does
the rest for every study alike: validation before anything is compiled,
results.json with provenance, resume, the figure files and the table.

Modules (their import order below is the order of `STUDIES`, hence of
`checks.PROBE_OWN_FIELDS` and of the README's field table):

* common.py: Subject and the helpers studies share (directions, curves).
* valley.py: noise_types, sign_ratio, special, groups (Fig. 3-6).
* runs.py: bn_init, hparams, interpolate (Fig. 7-9), which compare runs.
* surface.py: surface (a 2D loss surface, Li et al.).

How to add a study (one new file, one new line):

1. Write `valley_jax/studies/<family>.py`::

     import ml_collections
     from valley_jax import checks, directions
     from valley_jax.studies import Study, common, register

     def my_kind(p, s):
       '''Fig. N: what it measures.'''
       c = p.config.my_kind
       return {'curves': [common.noise_line(p, s, c.noise, True, 'panel',
                                            scale=c.scale)]}

     def _config():
       return ml_collections.ConfigDict(dict(noise='gaussian', scale=1.0))

     def _validate(config):
       directions.check_noise(config.my_kind.noise)

     register(Study('my_kind', my_kind, _config, validate=_validate,
                    fields=(checks.positive('my_kind.scale'),)))

2. Add `from valley_jax.studies import <family>` to the imports at the end
   of this file.

`--config.kind=my_kind` then runs it, `defaults.probe_config()` holds its
block and its fields are range-checked. Its fields are listed in
`checks.PROBE_OWN_FIELDS`, whose table the README embeds (a test compares
them): paste `checks.markdown(checks.PROBE_OWN_FIELDS)` there. A study with
its own figure passes `figure=` (a function of plots.py); one that compares
several runs passes `multi_run=True` and `checkpoints=`.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any, Callable

import ml_collections

from valley_jax import checks, plots
from valley_jax.studies import common

if TYPE_CHECKING:  # Only for annotations: probe_lib imports the studies.
  from valley_jax.probe_lib import Prober

Config = ml_collections.ConfigDict


def _no_check(config: Config) -> None:
  del config


@dataclasses.dataclass(frozen=True)
class Study:
  """One kind of config.kind.

  Attributes:
    name: the kind; also its config block (`config.<name>`) and its results
      folder (`<workdir>/<name>/`).
    run: (prober, subject) -> the results.json entries of the kind
      ('curves' and whatever its figure needs). The subject is
      config.checkpoint; a multi_run study gets None and loads its own with
      `prober.subject(workdir, epoch, label)`; a study that measures no
      checkpoint gets None too.
    config: () -> its config block with the defaults.
    validate: (probe config) -> None; raises ValueError for a bad name or
      range in its block, reading no file. Runs for every registered study
      before anything else is done.
    fields: its numeric fields (paths from the probe config's root); each
      is range-checked and listed in checks.PROBE_OWN_FIELDS.
    figure: (results, folder) -> the paths of the files it wrote.
    checkpoints: (probe config) -> the (workdir, epoch) pairs it measures;
      the first names the run in results.json, and their provenance decides
      whether a finished results.json is reused. `lambda config: []`: it
      measures no checkpoint (a theory demo on its own data), so
      config.checkpoint is neither checked, trained nor restored for it;
      its provenance is [] and its results name their own model/dataset.
    multi_run: whether it measures the runs of its own block rather than
      config.checkpoint.
    check_checkpoints: (probe config) -> None; for a selected multi_run
      study, the checks that read files (the runs exist and fit together).
      None: each of `checkpoints(config)` must be kept.
  """

  name: str
  run: Callable[[Prober, common.Subject | None], dict[str, Any]]
  config: Callable[[], Config]
  validate: Callable[[Config], None] = _no_check
  fields: tuple[checks.Field, ...] = ()
  figure: Callable[[dict[str, Any], str], list[str]] = plots.curve_panels
  checkpoints: Callable[[Config], list[tuple[str, Any]]] = (
      common.main_checkpoint)
  multi_run: bool = False
  check_checkpoints: Callable[[Config], None] | None = None


# kind -> Study, in registration order.
STUDIES: dict[str, Study] = {}


def register(study: Study) -> Study:
  """Adds a study to STUDIES.

  Args:
    study: the study; its name must be new.

  Returns:
    The study.
  """
  if study.name in STUDIES:
    raise ValueError(f'A study named {study.name!r} is already registered.')
  STUDIES[study.name] = study
  return study


def study_fields() -> list[checks.Field]:
  """The numeric fields of every study, in registration order."""
  return [f for s in STUDIES.values() for f in s.fields]


# The study modules register themselves on import, in this order: one line
# per module (they import Study and register from above).
# pylint: disable=g-import-not-at-top,wrong-import-position
from valley_jax.studies import valley  # noqa: E402,F401
from valley_jax.studies import runs  # noqa: E402,F401
from valley_jax.studies import surface  # noqa: E402,F401
from valley_jax.studies import soups  # noqa: E402,F401
from valley_jax.studies import theory  # noqa: E402,F401
from valley_jax.studies import curvature  # noqa: E402,F401
