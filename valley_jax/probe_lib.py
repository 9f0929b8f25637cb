"""run(config, workdir): the paper's valley studies on trained checkpoints.

The studies themselves (the kinds of config.kind, their config blocks and
checks) live in valley_jax/studies/, one module per family; this module
holds what they share: validation, the Prober that loads checkpoints and
compiles sweeps, and the run loop. Each kind writes
`<workdir>/<kind>/results.json` and a figure (PNG + PDF) and prints a table:
per curve, the mean test error of the positive half (λ ∈ [0, 1]), of the
negative half (λ ∈ [-1, 0]) and their difference.

Models with BN are recalibrated per point by default (config.sweep.recal =
'auto'); the sweep then evaluates with the recomputed statistics.

Failure behaviour: names and every numeric field (`checks.PROBE_FIELDS`) are
checked, the workdir is proven writable and the checkpoints are found before
anything is compiled. results.json and the figures are written atomically;
results.json records the provenance of every checkpoint it measured (the
resolved epoch, a fingerprint of the parameters and batch statistics, the
training config). A rerun skips a kind only when its results.json is readable
and holds the same probe config and the same provenance; a missing figure
beside it is redrawn.
"""

import json
import math
from typing import Any

from absl import logging
from etils import epath
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import tqdm

from valley_jax import (checkpoint, checks, data, landscape, normalize,
                        outputs, sharding, studies, train_lib)
from valley_jax.studies import common, valley

KINDS = tuple(studies.STUDIES)
# Kinds that compare several runs; the others probe config.checkpoint.
MULTI_RUN = tuple(k for k, s in studies.STUDIES.items() if s.multi_run)
# kind -> run function; run() looks a kind up here when it runs it.
_RUNNERS = {k: s.run for k, s in studies.STUDIES.items()}
DTYPES = {'float32': jnp.float32, 'bfloat16': jnp.bfloat16}

# The studies' names that tests reach through probe_lib.
Subject = common.Subject
noise_line = common.noise_line
special = valley.special


def kinds_of(config) -> list[str]:
  """The kinds of config.kind, in order.

  Args:
    config: the probe config.

  Returns:
    The kind names; ValueError for an unknown or empty one.
  """
  kinds = [k.strip() for k in config.kind.split(',') if k.strip()]
  bad = [k for k in kinds if k not in KINDS]
  if bad or not kinds:
    raise ValueError(f'Unknown probe kind(s) {bad or config.kind!r}; choose '
                     f'from {KINDS} (config.kind, comma-separated).')
  return kinds


# ----------------------------------------------------------------- validation


def validate(config: ml_collections.ConfigDict) -> list[str]:
  """Every name, range and checkpoint, before anything is compiled.

  Args:
    config: the probe config.

  Returns:
    The kinds to run.
  """
  kinds = check_names(config)
  selected = [studies.STUDIES[k] for k in kinds]
  if any(_probes_main(s, config) for s in selected) and not _will_train(
      config):
    if not checkpoint.epochs(config.checkpoint):
      raise FileNotFoundError(
          f'config.checkpoint={config.checkpoint!r} holds no checkpoint. '
          'Check the path, or train it first: python train.py '
          f'--config=configs/<config>.py --workdir={config.checkpoint}')
    common.check_checkpoint(config.checkpoint, config.epoch)
  for s in selected:
    if s.multi_run:
      _check_runs(s, config)
  return kinds


def _probes_main(study: studies.Study, config) -> bool:
  """Whether a kind measures config.checkpoint (a kind whose checkpoints
  are [] measures none: a theory demo on its own data)."""
  return not study.multi_run and bool(study.checkpoints(config))


def _check_runs(study: studies.Study, config) -> None:
  """The checkpoints of a multi-run study exist (and fit together)."""
  if study.check_checkpoints is not None:
    study.check_checkpoints(config)
    return
  for w, e in study.checkpoints(config):
    common.check_checkpoint(w, e, f'config.{study.name}')


def _will_train(config) -> bool:
  """Whether probe.py trains config.checkpoint itself (the embedded default
  only: config.train_if_missing names that one workdir)."""
  return bool(config.train_if_missing) and (
      config.checkpoint == config.train_if_missing) and not checkpoint.epochs(
          config.checkpoint)


def check_names(config: ml_collections.ConfigDict) -> list[str]:
  """Kinds, names and ranges of a probe config (no file is read).

  The shared fields are checked here, then every registered study checks its
  own block (selected or not, so a bad default fails early).

  Args:
    config: the probe config.

  Returns:
    The kinds to run.
  """
  checks.check(config, checks.PROBE_FIELDS)
  kinds = kinds_of(config)
  sw = config.sweep
  common.check_range(sw.lam_min, sw.lam_max, sw.num_points, 'config.sweep')
  if sw.dtype not in DTYPES:
    raise ValueError(f'Unknown dtype {sw.dtype!r}; choose one of '
                     f'{tuple(DTYPES)} (config.sweep.dtype).')
  if sw.recal not in ('auto', 'on', 'off'):
    raise ValueError("config.sweep.recal must be 'auto', 'on' or 'off'.")
  if config.seeds < 1:
    raise ValueError('config.seeds must be >= 1.')
  normalize.check_normalization(config.normalization)
  for study in studies.STUDIES.values():
    study.validate(config)
  return kinds


# ------------------------------------------------------------------- prober


class Prober:
  """Loads checkpoints and data once and compiles one sweep per model."""

  def __init__(self, config: ml_collections.ConfigDict):
    self.config = config
    self.mesh = sharding.make_mesh(config.get('num_devices', 0))
    self.root = jax.random.key(config.seed)
    self._datasets: dict[str, data.Dataset] = {}
    self._settings: dict[str, landscape.Setting] = {}
    self.bar = tqdm.tqdm(desc='probe', unit='curve', disable=None)

  def dataset(self, data_cfg: dict[str, Any]) -> data.Dataset:
    key = json.dumps(data_cfg, sort_keys=True)
    if key not in self._datasets:
      self._datasets[key] = data.from_config(
          ml_collections.ConfigDict(data_cfg))
    return self._datasets[key]

  def subject(self, workdir: str, epoch='last', label: str = '') -> Subject:
    variables, cfg = checkpoint.restore_model(workdir, epoch, self.mesh)
    ds = self.dataset(cfg['data'])
    model = train_lib.build(ml_collections.ConfigDict(cfg), ds)
    # Runs of the same architecture on the same data share one compiled sweep.
    key = common.architecture(cfg) + json.dumps(cfg['data'], sort_keys=True)
    if key not in self._settings:
      self._settings[key] = self._setting(model, ds,
                                          bool(variables['batch_stats']))
    return Subject(label or workdir, workdir, epoch, cfg, model,
                   variables['params'], variables['batch_stats'], ds,
                   self._settings[key])

  def _setting(self, model, ds: data.Dataset,
               has_bn: bool) -> landscape.Setting:
    sw = self.config.sweep
    recal = sw.recal == 'on' or (sw.recal == 'auto' and has_bn)
    if sw.recal == 'on' and not has_bn:
      logging.warning("config.sweep.recal='on', but %s has no BatchNorm: "
                      'there is nothing to recalibrate, so every point is '
                      'evaluated as it is.', type(model).__name__)
      recal = False
    n_dev = self.mesh.shape[sharding.DATA]
    x, y = ds.x_test, ds.y_test
    if sw.n_test:
      x, y = x[:sw.n_test], y[:sw.n_test]
    eval_bs = _round_up(min(sw.eval_batch_size, len(y)), n_dev)
    eval_data = landscape.make_batches(x, y, eval_bs, self.mesh)
    recal_x = None
    if recal:
      rb = _round_up(min(sw.recal_batch_size, sw.recal_samples,
                         len(ds.y_train)), n_dev)
      n = min(sw.recal_samples, len(ds.y_train)) // rb * rb
      order = np.random.default_rng(self.config.seed).permutation(
          len(ds.y_train))
      recal_x = landscape.make_recal_batches(ds.x_train[order], n, rb,
                                             self.mesh)
    fn = landscape.make_sweep(model, ds.mean, ds.std, recal=recal,
                              chunk=sw.chunk or None,
                              dtype=DTYPES[sw.dtype], mesh=self.mesh)
    return landscape.Setting(fn, eval_data, recal_x, self.mesh)


def _round_up(n: int, k: int) -> int:
  return -(-n // k) * k


# ---------------------------------------------------------------------- run


finite_or_none = outputs.finite_or_none


def table(results: dict[str, Any]) -> str:
  """Per curve: mean error of the positive half, negative half, difference."""
  rows = [f"{'curve':<34} {'panel':<22} {'err+':>7} {'err-':>7} {'diff':>7}"]
  for c in results['curves']:
    pos, neg = c['positive_error'], c['negative_error']
    pos, neg = (math.nan if v is None else v for v in (pos, neg))
    rows.append(f"{c['label'][:34]:<34} {str(c.get('panel', ''))[:22]:<22} "
                f'{pos:7.3f} {neg:7.3f} {pos - neg:+7.3f}')
  return '\n'.join(rows)


def _ensure_trained(config, kinds: list[str]) -> None:
  if _will_train(config) and any(
      _probes_main(studies.STUDIES[k], config) for k in kinds):
    logging.warning('No checkpoint in %s: training %s first.',
                    config.checkpoint, config.train.model.name)
    train_lib.run(config.train, config.checkpoint)


# The header of a kind that measures no checkpoint; its results override
# model and dataset.
_NO_CHECKPOINT = {'model': None, 'dataset': None, 'checkpoint': None}


def _header(workdir: str, epoch) -> dict[str, Any]:
  cfg = checkpoint.load_config(workdir)
  return {'model': cfg['model']['name'], 'dataset': cfg['data']['name'],
          'checkpoint': {'workdir': workdir, 'epoch': epoch}}


def _checkpoints_of(config, kind: str) -> list[tuple[str, Any]]:
  """The (workdir, epoch) pairs a kind measures; the first names the run."""
  return studies.STUDIES[kind].checkpoints(config)


def _finished(folder: epath.Path, config,
              prov: list[dict[str, Any]]) -> dict[str, Any] | None:
  """results.json of an earlier run of the same config on the same
  checkpoints (resume), else None; a damaged file counts as missing."""
  old = outputs.read_json(folder / 'results.json')
  if old is None or old.get('config') != checkpoint.as_json(config.to_dict()):
    return None
  if old.get('provenance') != checkpoint.as_json(prov):
    logging.warning('%s was measured on other checkpoints than %s now hold '
                    '(retrained?): recomputing it.', folder / 'results.json',
                    [p['workdir'] for p in prov])
    return None
  return old


def _draw(kind: str, results: dict[str, Any], folder: epath.Path) -> list[str]:
  """Draws a kind's figure files; returns their names."""
  paths = studies.STUDIES[kind].figure(results, str(folder))
  return [epath.Path(f).name for f in paths]


def run(config: ml_collections.ConfigDict, workdir: str) -> dict[str, str]:
  """Runs every kind of config.kind; returns kind -> results.json path.

  A kind whose results.json already holds this config and was measured on
  the same checkpoints (same fingerprints) is not recomputed, so an
  interrupted probe started again resumes after its last finished kind.
  """
  kinds = validate(config)
  outputs.check_writable(workdir, '--workdir')
  _ensure_trained(config, kinds)
  p = Prober(config)
  main, paths = None, {}
  for kind in kinds:
    folder = epath.Path(workdir) / kind
    prov = [checkpoint.provenance(w, e) for w, e in _checkpoints_of(config,
                                                                   kind)]
    results = _finished(folder, config, prov)
    if results is None:
      probes_main = _probes_main(studies.STUDIES[kind], config)
      if main is None and probes_main:
        main = p.subject(config.checkpoint, config.epoch)
      out = _RUNNERS[kind](p, main if probes_main else None)
      cks = _checkpoints_of(config, kind)
      results = outputs.finite_or_none({
          'kind': kind, **(_header(*cks[0]) if cks else _NO_CHECKPOINT),
          'provenance': prov, 'config': config.to_dict(), **out})
      folder.mkdir(parents=True, exist_ok=True)
      results['figures'] = _draw(kind, results, folder)
      outputs.write_json(folder / 'results.json', results)
    elif not all((folder / f).exists() for f in results.get('figures', ())):
      _draw(kind, results, folder)  # Results kept, a figure lost: redraw.
    p.bar.write(f'\n== {kind} ({folder}) ==\n{table(results)}')
    paths[kind] = str(folder / 'results.json')
  p.bar.close()
  return paths
