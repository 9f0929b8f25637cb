"""The Study record: what one kind of `config.kind` is made of.

A study module (valley_jax/probe/studies/<family>.py) defines its studies as
`Study` records and lists them in its `STUDIES` tuple; valley_jax/probe/
registry.py gathers every family's into one dict, in an order written there.
The probe runner does the rest for every study alike: validation before
anything is compiled, results.json with provenance, resume, the figure files
and the table. How to add one: docs/architecture.md.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import ml_collections

from valley_jax import checks, plots
from valley_jax.probe.prober import Prober, Subject

Config = ml_collections.ConfigDict


def main_checkpoint(config: ml_collections.ConfigDict
                    ) -> list[tuple[str, Any]]:
  """The checkpoint of a single-checkpoint study: config.checkpoint.

  Args:
    config: the probe config.

  Returns:
    [(workdir, epoch)].
  """
  return [(config.checkpoint, config.epoch)]


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
      is range-checked and listed in registry.own_fields().
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
  run: Callable[[Prober, Subject | None], dict[str, Any]]
  config: Callable[[], Config]
  validate: Callable[[Config], None] = _no_check
  fields: tuple[checks.Field, ...] = ()
  figure: Callable[[dict[str, Any], str], list[str]] = plots.curve_panels
  checkpoints: Callable[[Config], list[tuple[str, Any]]] = (
      main_checkpoint)
  multi_run: bool = False
  check_checkpoints: Callable[[Config], None] | None = None
