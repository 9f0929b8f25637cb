"""run(config, workdir): the paper's valley studies on trained checkpoints.

The studies themselves (the kinds of config.kind, their config blocks,
checks and figures) live in valley_jax/probe/studies/, one module per
family, gathered by valley_jax/probe/registry.py; the Prober they receive is
valley_jax/probe/prober.py. This module holds the run loop: validation,
provenance, reuse of finished results, figures and the table. Each kind writes
`<workdir>/<kind>/results.json` and a figure (PNG + PDF) and prints a table:
per curve, the mean test error of the positive half (λ ∈ [0, 1]), of the
negative half (λ ∈ [-1, 0]) and their difference.

Models with BN are recalibrated per point by default (config.sweep.recal =
'auto'); the sweep then evaluates with the recomputed statistics, with every
BN folded into the convolution before it (config.sweep.fold_bn).

Speed (issue 10): directions are built by two compiled functions (see
probe.studies.common.make_direction); figures are drawn by one worker
thread while the next kind sweeps, in config.figure_formats;
config.sweep.dtype says what precision means ('float32' is full float32:
matmul precision HIGHEST; 'tf32' is XLA's default, reduced on GPUs;
'bfloat16'), and results.json records it under 'precision'; eval/recal
batch sizes of 0 are chosen for the device (prober.AUTO_BATCH).

Failure behaviour: names and every numeric field (`registry.fields()`) are
checked, the workdir is proven writable and the checkpoints are found before
anything is compiled. results.json and the figures are written atomically;
results.json records the provenance of every checkpoint it measured (the
resolved epoch, a fingerprint of the parameters and batch statistics, the
training config; or, with config.weights, the state-dict file's path and
SHA-256). A rerun skips a kind only when its results.json is readable
and holds the same probe config and the same provenance; a missing figure
beside it is redrawn.

Training first: a probe trains the runs it measures that are missing before
it measures anything. config.train_if_missing names the one workdir of
config.checkpoint that config.train may train (the embedded default);
config.train_runs names the training config of any other run, as
'WORKDIR=CONFIG_FILE[:VARIANT]' (the runs of bn_init, interpolate and
hparams: configs/probe_bn_init.py:digits trains its three runs and probes
them in one command). Every entry is loaded and validated before anything
is trained; then the runs are trained one after another, each only when its
workdir holds no checkpoint, or holds a run of the same config stopped
before its last epoch (which is resumed). A finished run, or a run of
another config (trained by hand with other flags), is measured as it is.
The checkpoint checks of a study whose runs are trained here come after the
training.
"""

import concurrent.futures
import dataclasses
import importlib.util
import math
import os
import re
from typing import Any

import jax.numpy as jnp
import ml_collections
from absl import logging
from etils import epath

from valley_jax import (checkpoint, checks, compile_cache, convert, models,
                        outputs, plots, preemption, rundir)
from valley_jax.core import normalize, sweep
from valley_jax.errors import (InputError, InputFileError, UserError,
                               WorkdirBusyError)
from valley_jax.probe import registry
from valley_jax.probe.prober import DTYPES, PRECISIONS, Prober, batch_sizes
from valley_jax.probe.studies import common
from valley_jax.probe.study import Study
from valley_jax.train import runner as train_runner

FIGURE_FORMATS = ('png', 'pdf', 'svg')
# results.json files of another version are recomputed, not reused: version 2
# (2026-12-01) changed what some results mean (option-A CIFAR ResNets,
# seeded ImageNet/Flowers subsets, adaptive normalisation of dense kernels,
# BN biases outside the Fig. 8 groups, precision HIGHEST for 'float32');
# version 3 (2026-12-02): listing2's loss is clipped as sklearn's log_loss
# and its Taylor terms come in two definitions under new keys; version 4
# (2026-12-07): intervals (issue 25): curves carry 'diff', '*_ci' and
# 'n_examples', results carry 'findings' and 'evaluation', and the default
# probe draws config.seeds directions per curve.
RESULTS_VERSION = 4

def kinds_of(config) -> list[str]:
  """The kinds of config.kind, in order.

  Args:
    config: the probe config.

  Returns:
    The kind names; ValueError for an unknown or empty one.
  """
  kinds = [k.strip() for k in config.kind.split(',') if k.strip()]
  bad = [k for k in kinds if k not in registry.KINDS]
  if bad or not kinds:
    raise InputError(f'Unknown probe kind(s) {bad or config.kind!r}; choose '
                     f'from {registry.KINDS} (config.kind, comma-separated).')
  return kinds


# ----------------------------------------------------------------- validation


def validate(config: ml_collections.ConfigDict) -> list[str]:
  """Every name, range and checkpoint, before anything is compiled.

  The entries of config.train_runs are loaded and validated too; the
  checkpoints of runs that probe.py is about to train are checked after
  that training (see run).

  Args:
    config: the probe config.

  Returns:
    The kinds to run.
  """
  return _validate(config)[0]


def _validate(config) -> tuple[list[str], list['TrainRun']]:
  """validate(), and the runs to train before probing (in order)."""
  kinds = check_names(config)
  plan = _training_plan(config, kinds)
  selected = [registry.STUDIES[k] for k in kinds]
  probes_main = any(_probes_main(s, config) for s in selected)
  if probes_main and config.get('weights'):
    if not epath.Path(config.weights).exists():
      raise InputFileError(f'config.weights={config.weights!r} does not '
                           'exist (a .safetensors, .npz or .pth file).')
    if 'special' in kinds and 'init' in config.special.directions:
      raise InputError("config.weights holds no initialisation θ0: drop "
                       "'init' from config.special.directions.")
  elif probes_main and not _planned(plan, config.checkpoint):
    if not checkpoint.epochs(config.checkpoint):
      raise InputFileError(
          f'config.checkpoint={config.checkpoint!r} holds no checkpoint. '
          'Check the path, or train it first: python train.py '
          f'--config=configs/<config>.py --workdir={config.checkpoint} '
          "(or name its training config in config.train_runs: "
          f"'{config.checkpoint}=configs/<config>.py').")
    common.check_checkpoint(config.checkpoint, config.epoch)
  for s in selected:
    if s.multi_run:
      _check_runs_before_training(s, config, plan)
  _check_not_training(config, kinds, plan)
  return kinds, plan


def _check_not_training(config, kinds: list[str], plan) -> None:
  """Refuses to measure a workdir that train.py (or fedsim.py) is writing
  now: its 'last' epoch, and any epoch its keep policy drops, could vanish
  between two kinds."""
  for w in sorted(_measured(config, kinds)):
    if not _planned(plan, w) and (holder := rundir.writer(w)):
      raise WorkdirBusyError(
          f'{w} is being written by a training run now ({holder}); its '
          'checkpoints can change while they are probed. Probe it when that '
          'run has ended.')


def _probes_main(study: Study, config) -> bool:
  """Whether a kind measures config.checkpoint (a kind whose checkpoints
  are [] measures none: a theory demo on its own data)."""
  return not study.multi_run and bool(study.checkpoints(config))


def _check_runs(study: Study, config) -> None:
  """The checkpoints of a multi-run study exist (and fit together)."""
  if study.check_checkpoints is not None:
    study.check_checkpoints(config)
    return
  for w, e in study.checkpoints(config):
    common.check_checkpoint(w, e, f'config.{study.name}')


def _check_runs_before_training(study: Study, config,
                                plan: list['TrainRun']) -> None:
  """_check_runs, except that a run about to be trained may be missing.

  The study's own checks run in full (its names and counts fail here); when
  only a file is missing and the study measures runs of the plan, each of
  its runs that is not about to be trained must be kept now, and the full
  check runs again after the training (run)."""
  try:
    _check_runs(study, config)
  except InputFileError:
    if not any(_planned(plan, w) for w, _ in study.checkpoints(config)):
      raise
    for w, e in study.checkpoints(config):
      if not _planned(plan, w):
        common.check_checkpoint(w, e, f'config.{study.name}')


def _will_train(config) -> bool:
  """Whether probe.py trains config.checkpoint itself (the embedded default
  only: config.train_if_missing names that one workdir): when it holds no
  checkpoint, or the run of config.train stopped before its last epoch
  (pre-empted), which train_runner.run then resumes. A run of another config
  (say, trained by hand with other flags) is probed as it is."""
  if config.get('weights') or not config.train_if_missing or (
      config.checkpoint != config.train_if_missing):
    return False
  return _needs_training(config.checkpoint, config.train)


def _needs_training(workdir: str, train: ml_collections.ConfigDict) -> bool:
  """Whether `workdir` holds no checkpoint, or a run of `train` stopped
  before its last epoch (train_runner.run resumes it)."""
  kept = checkpoint.epochs(workdir)
  if not kept:
    return True
  old = checkpoint.load_config(workdir)
  return (old is not None and max(kept) < train.train.epochs and
          not rundir.config_diff(old, train.to_dict()))


# -------------------------------------------------------------- train_runs

# A relative config file of config.train_runs that is not found from the
# working directory is looked up in the repository, so that
# 'configs/digits_cnn.py' works wherever probe.py is started (a temporary
# folder that receives runs/, say).
_REPO = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
# WORKDIR=CONFIG_FILE[:VARIANT]: the workdir may hold '=' ('runs/lr=0.1'), the
# config file may be a URL ('gs://...'); the variant follows the last ':'
# after '.py'.
_ENTRY = re.compile(r'^(?P<workdir>.*)=(?P<path>[^=]*?\.py)'
                    r'(?::(?P<variant>[^:=]*))?$')
_ENTRY_FORM = ("'WORKDIR=CONFIG_FILE[:VARIANT]', e.g. "
               "'runs/digits_bs8=configs/digits_cnn.py:bs8'")


@dataclasses.dataclass(frozen=True)
class TrainRun:
  """A run that probe.py may train: its workdir and training config.

  Attributes:
    where: the field that names it, for messages
      ('config.train_runs[1]' or 'config.train').
    workdir: where it is trained.
    config: its training config (validated).
    source: what it was made from: the entry as written, or
      'config.train'.
  """

  where: str
  workdir: str
  config: ml_collections.ConfigDict
  source: str


def train_runs(config: ml_collections.ConfigDict) -> list[TrainRun]:
  """config.train_runs, every entry loaded and validated (no run is read).

  Args:
    config: the probe config.

  Returns:
    One TrainRun per entry, in order; InputError (or InputFileError)
    naming the entry and the fix for an entry that is malformed, names a
    missing config file, a config that does not load (a bad variant) or is
    not a training config, fails train.py's validation, or names a workdir
    another entry names too.
  """
  entries = config.get('train_runs', ())
  if isinstance(entries, str):
    raise InputError(f'config.train_runs={entries!r} must be a tuple of '
                     f'{_ENTRY_FORM}.')
  data_dir = config.get('train_data_dir', '')
  runs = [_load_entry(str(e), f'config.train_runs[{i}]', data_dir)
          for i, e in enumerate(entries)]
  runs = [r for run in runs
          for r in _seeded(run, config.get('train_seeds', 1))]
  seen = {}
  for r in runs:
    key = _dir_key(r.workdir)
    if key in seen:
      raise InputError(f'{r.where}={r.source!r} trains {r.workdir!r}, which '
                       f'{seen[key]} names too: give every run its own '
                       'workdir.')
    seen[key] = r.where
  return runs


def _seeded(run: TrainRun, n: int) -> list[TrainRun]:
  """An entry over config.train_seeds training seeds: the entry itself and
  its replicas (common.replicas), trained with seed + k."""
  out = [run]
  for k, workdir in enumerate(common.replicas(run.workdir, n)[1:], 1):
    cfg = ml_collections.ConfigDict(run.config.to_dict())
    cfg.seed = run.config.seed + k
    out.append(TrainRun(f'{run.where} (train seed +{k})', workdir, cfg,
                        run.source))
  return out


def _load_entry(entry: str, where: str, data_dir: str) -> TrainRun:
  """One entry of config.train_runs, loaded and validated."""
  m = _ENTRY.match(entry)
  if m:  # The config path is the part ending in .py after the last '='.
    workdir, sep, path, variant = (m['workdir'], '=', m['path'],
                                   m['variant'] or '')
  else:
    workdir, sep, spec = entry.partition('=')
    path, _, variant = spec.partition(':')
  workdir, path, variant = workdir.strip(), path.strip(), variant.strip()
  if not (sep and workdir and path):
    raise InputError(f'{where}={entry!r}: write {_ENTRY_FORM}.')
  cfg = _load_train_config(_config_file(path, where, entry), variant, where,
                           entry)
  if data_dir and not cfg.data.get('data_dir'):
    cfg.data.data_dir = data_dir
  try:
    train_runner.validate(cfg)
    _check_model(cfg.model)
  except UserError as e:
    raise type(e)(f'{where}={entry!r}: {e} Fix the config file or the '
                  'variant.') from e
  return TrainRun(where, workdir, cfg, entry)


def _check_model(m: ml_collections.ConfigDict) -> None:
  """The model options build (bn_init, width, bn; no data are read, so
  10 classes stand in for the dataset's)."""
  models.build_model(m.name, 10, width=m.width, bn=m.bn, bn_init=m.bn_init,
                     **m.get('kwargs', {}))


def _config_file(path: str, where: str, entry: str) -> str:
  """The config file of an entry: as given, else in the repository."""
  if outputs.is_remote(path):
    raise InputError(
        f'{where}={entry!r}: the config file {path!r} is remote; config '
        'files are read from the local disk (they are Python modules): copy '
        'it here and name the copy.')
  candidates = [path]
  if not os.path.isabs(path):
    candidates.append(os.path.join(_REPO, path))
  for c in candidates:
    if os.path.isfile(c):
      return c
  raise InputFileError(
      f'{where}={entry!r}: the config file {path!r} does not exist (looked '
      f'in {os.getcwd()} and in {_REPO}). Name a training config file of '
      'configs/, e.g. configs/digits_cnn.py.')


def _load_train_config(path: str, variant: str, where: str,
                       entry: str) -> ml_collections.ConfigDict:
  """get_config(variant) of a config file, as train.py would load it."""
  try:
    spec = importlib.util.spec_from_file_location('_train_run_config', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    cfg = module.get_config(variant) if variant else module.get_config()
  except Exception as e:  # pylint: disable=broad-except
    arg = f' with variant {variant!r}' if variant else ''
    raise InputError(f'{where}={entry!r}: {path} does not load{arg}: '
                     f'{e}') from e
  if not isinstance(cfg, ml_collections.ConfigDict) or 'kind' in cfg or (
      'fed' in cfg) or not {'model', 'data', 'optim', 'train'} <= set(cfg):
    raise InputError(f'{where}={entry!r}: {path} is not a training config '
                     "(train.py's); name one such as configs/digits_cnn.py.")
  return cfg


def _dir_key(workdir: str) -> str:
  """A workdir as compared with another (the same folder, however
  written)."""
  if outputs.is_remote(workdir):
    return workdir.rstrip('/')
  return os.path.normpath(os.path.abspath(workdir))


def _planned(plan: list[TrainRun], workdir: str) -> bool:
  return any(_dir_key(r.workdir) == _dir_key(workdir) for r in plan)


def _measured(config, kinds: list[str]) -> set[str]:
  """The workdirs the selected kinds measure (as _dir_key)."""
  out = set()
  for k in kinds:
    s = registry.STUDIES[k]
    if _probes_main(s, config) and not config.get('weights'):
      out.add(_dir_key(config.checkpoint))
    elif s.multi_run:
      out.update(_dir_key(w) for w, _ in s.checkpoints(config) if w)
  return out


def _training_plan(config, kinds: list[str]) -> list[TrainRun]:
  """The runs to train before probing: the default of
  config.train_if_missing, then each entry of config.train_runs that a
  selected kind measures and whose workdir needs training."""
  runs = train_runs(config)  # Every entry is checked, needed or not.
  plan = []
  if _will_train(config) and any(
      _probes_main(registry.STUDIES[k], config) for k in kinds):
    plan.append(TrainRun('config.train', config.checkpoint, config.train,
                         'config.train'))
  measured = _measured(config, kinds)
  for r in runs:
    if _dir_key(r.workdir) not in measured:
      logging.warning('%s names %s, which no kind of config.kind=%r '
                      'measures: not trained.', r.where, r.workdir,
                      config.kind)
    elif not _planned(plan, r.workdir) and _needs_training(r.workdir,
                                                           r.config):
      plan.append(r)
    elif not _planned(plan, r.workdir):
      _warn_if_other_config(r)
  return plan


def _warn_if_other_config(r: TrainRun) -> None:
  """A kept run that is not of the entry's config is measured as it is."""
  old = checkpoint.load_config(r.workdir)
  diff = (rundir.config_diff(old, r.config.to_dict()) if old else
          ['its stored config'])
  if diff:
    logging.warning('%s holds a run of another config than %s=%r (%s '
                    'differ): measured as it is.', r.workdir, r.where,
                    r.source, ', '.join(diff[:5]))


def check_names(config: ml_collections.ConfigDict) -> list[str]:
  """Kinds, names and ranges of a probe config (no file is read).

  The shared fields are checked here, then every registered study checks its
  own block (selected or not, so a bad default fails early).

  Args:
    config: the probe config.

  Returns:
    The kinds to run.
  """
  checks.check(config, registry.fields())
  kinds = kinds_of(config)
  sw = config.sweep
  common.check_range(sw.lam_min, sw.lam_max, sw.num_points, 'config.sweep')
  if sw.dtype not in DTYPES:
    raise InputError(f'Unknown dtype {sw.dtype!r}; choose one of '
                     f'{tuple(DTYPES)} (config.sweep.dtype).')
  if sw.recal not in ('auto', 'on', 'off'):
    raise InputError("config.sweep.recal must be 'auto', 'on' or 'off'.")
  if not isinstance(sw.get('fold_bn', True), bool):
    raise InputError(f'config.sweep.fold_bn={sw.fold_bn!r} must be True or '
                     'False.')
  figure_formats(config)
  compile_cache.check(config.get('compile_cache', ''))
  if config.seeds < 1:
    raise InputError('config.seeds must be >= 1.')
  normalize.check_normalization(config.normalization)
  for study in registry.STUDIES.values():
    study.validate(config)
  return kinds


def figure_formats(config) -> tuple[str, ...]:
  """config.figure_formats as a tuple ('png,pdf' or a tuple of names).

  Args:
    config: the probe config.

  Returns:
    The formats; ValueError naming the field for an unknown or empty one.
  """
  value = config.get('figure_formats', ('png',))
  names = value.split(',') if isinstance(value, str) else list(value)
  names = [str(n).strip().lower() for n in names if str(n).strip()]
  bad = [n for n in names if n not in FIGURE_FORMATS]
  if bad or not names:
    raise InputError(f'config.figure_formats={value!r}: choose one or more '
                     f"of {FIGURE_FORMATS}, e.g. --config.figure_formats="
                     "'png,pdf'.")
  return tuple(names)


def precision_of(config) -> dict[str, Any]:
  """What config.sweep.dtype means, for results.json.

  Args:
    config: the probe config.

  Returns:
    {'dtype', 'compute_dtype', 'matmul_precision', 'fold_bn'}.
  """
  sw = config.sweep
  return {'dtype': sw.dtype,
          'compute_dtype': jnp.dtype(DTYPES[sw.dtype]).name,
          'matmul_precision': PRECISIONS[sw.dtype] or 'default',
          'fold_bn': bool(sw.get('fold_bn', True))}


# ---------------------------------------------------------------------- run




def table(results: dict[str, Any]) -> str:
  """A kind's printed table: the evaluation set's resolution, the rows the
  README digests (results['digest']), the findings with their verdicts, and
  per curve the mean error of the positive half, of the negative half, their
  difference and its 95 % interval (left out for kinds whose results set
  'err_table' to False: their curves are not valleys around θ, λ ∈ [−1, 1]).

  Args:
    results: a kind's results.json.

  Returns:
    The table as text.
  """
  parts = []
  ev = results.get('evaluation')
  if ev:
    parts.append(f"evaluation: {ev['n_examples']} test examples, one example "
                 f"= {ev['one_example']:.4f} of an error; intervals: "
                 f"{ev['method']}")
  if results.get('digest'):
    parts.append('digest (the README\'s rows):\n' + _curve_rows(
        [dict(results['curves'][d['curve']], label=d['label'], panel='')
         for d in results['digest']]))
  if results.get('findings'):
    parts.append('findings:\n' + findings_table(results['findings']))
  if results.get('err_table', True) and results.get('curves'):
    parts.append('all curves:\n' + _curve_rows(results['curves']))
  elif not results.get('findings'):
    parts.append('(no err+/err− table: this kind\'s curves are not λ valleys;'
                 ' its summary is in results.json)')
  return '\n'.join(parts)


def _fmt(v, spec: str = '7.3f') -> str:
  return f'{math.nan if v is None else v:{spec}}'


def _curve_rows(curves: list[dict[str, Any]]) -> str:
  """Per curve: err+, err−, diff, its interval and n (seeds)."""
  rows = [f"{'curve':<30} {'panel':<20} {'err+':>7} {'err-':>7} {'diff':>7}"
          f" {'95% interval':>17} {'n':>2}"]
  for c in curves:
    pos, neg = c['positive_error'], c['negative_error']
    pos, neg = (math.nan if v is None else v for v in (pos, neg))
    ci = (c.get('diff') or {}).get('ci')
    ci = (f"[{_fmt(ci[0], '+.3f')}, {_fmt(ci[1], '+.3f')}]" if ci else '')
    rows.append(f"{c['label'][:30]:<30} {str(c.get('panel', ''))[:20]:<20} "
                f'{pos:7.3f} {neg:7.3f} {pos - neg:+7.3f} {ci:>17} '
                f"{c.get('seeds', ''):>2}")
  return '\n'.join(rows)


def findings_table(findings: list[dict[str, Any]]) -> str:
  """One row per finding: verdict, statistic, 95 % interval, n, claim.

  Any study's findings print (stats.finding's dicts); a finding without an
  interval reads 'no interval'.

  Args:
    findings: results['findings'].

  Returns:
    The rows as text.
  """
  rows = [f"{'verdict':<12} {'statistic':>9} {'95% interval':>17} "
          f"{'n':>9}  claim (statistic)"]
  for f in findings:
    if f is None:
      continue
    ci = f.get('ci')
    ci = (f"[{_fmt(ci[0], '+.3f')}, {_fmt(ci[1], '+.3f')}]" if ci else
          'no interval')
    n = str(f.get('n', ''))
    if f.get('n_examples'):
      n += f"×{f['n_examples']}"
    what = f" ({f['statistic']})" if f.get('statistic') else ''
    rows.append(f"{'resolved' if f.get('resolved') else 'NOT resolved':<12} "
                f"{_fmt(f.get('mean'), '+9.3f')} {ci:>17} {n:>9}  "
                f"{f.get('claim', '')}{what}")
  return '\n'.join(rows)


def _public(out: dict[str, Any]) -> dict[str, Any]:
  """A study's output without the per-example arrays its curves keep for
  the findings (curve keys that start with '_'), with 'evaluation' (the
  resolution of the evaluation set) when its curves have intervals."""
  curves = [{k: v for k, v in c.items() if not k.startswith('_')}
            for c in out.get('curves', ())]
  out = {**out, 'curves': curves} if 'curves' in out else dict(out)
  sizes = sorted({c['n_examples'] for c in curves if c.get('n_examples')})
  methods = [c['diff']['method'] for c in curves if c.get('diff')]
  if sizes and 'evaluation' not in out:
    out['evaluation'] = {
        'n_examples': sizes[-1] if len(sizes) == 1 else sizes,
        'one_example': 1.0 / sizes[-1],
        'method': (re.sub(r'over \d+ seeds', 'over seeds', methods[0])
                   if methods else
                   'hierarchical bootstrap over seeds and examples, 2000 '
                   'replicates, percentile 95%')}
  out.setdefault('findings', [])
  out['findings'] = [f for f in out['findings'] if f is not None]
  return out


def _train_missing(config, kinds: list[str], plan: list[TrainRun]) -> None:
  """Trains (or resumes) the runs of the plan, one after another, then
  checks the checkpoints of the kinds that measure them."""
  for i, r in enumerate(plan):
    state = 'resuming' if checkpoint.epochs(r.workdir) else 'training'
    logging.warning('Run %d of %d to train before probing: %s %s (%s, %s).',
                    i + 1, len(plan), state, r.workdir, r.source,
                    r.config.model.name)
    train_runner.run(r.config, r.workdir)
  if not plan:
    return
  for k in kinds:
    s = registry.STUDIES[k]
    if s.multi_run and any(_planned(plan, w) for w, _ in s.checkpoints(config)):
      _check_runs(s, config)
    elif _probes_main(s, config) and _planned(plan, config.checkpoint):
      common.check_checkpoint(config.checkpoint, config.epoch)


# The header of a kind that measures no checkpoint; its results override
# model and dataset.
_NO_CHECKPOINT = {'model': None, 'dataset': None, 'checkpoint': None}


def _header(workdir: str, epoch) -> dict[str, Any]:
  cfg = checkpoint.load_config(workdir)
  return {'model': cfg['model']['name'], 'dataset': cfg['data']['name'],
          'checkpoint': {'workdir': workdir, 'epoch': epoch}}


def _checkpoints_of(config, kind: str) -> list[tuple[str, Any]]:
  """The (workdir, epoch) pairs a kind measures; the first names the run."""
  return registry.STUDIES[kind].checkpoints(config)


def _from_weights(config, kind: str) -> bool:
  """Whether a kind measures config.weights instead of config.checkpoint."""
  return bool(config.get('weights')) and _probes_main(registry.STUDIES[kind],
                                                      config)


def _provenance(config, kind: str, p: Prober) -> list[dict[str, Any]]:
  """What a kind measures: its checkpoints, or the weights file's SHA-256."""
  if _from_weights(config, kind):
    return [convert.provenance(config.weights)]
  return [checkpoint.provenance(w, p.pin(w, e))
          for w, e in _checkpoints_of(config, kind)]


def _kind_header(config, kind: str) -> dict[str, Any]:
  if _from_weights(config, kind):
    return {'model': config.train.model.name,
            'dataset': config.train.data.name,
            'checkpoint': {'weights': config.weights}}
  cks = _checkpoints_of(config, kind)
  return _header(*cks[0]) if cks else _NO_CHECKPOINT


def _finished(folder: epath.Path, config,
              prov: list[dict[str, Any]]) -> dict[str, Any] | None:
  """results.json of an earlier run of the same config on the same
  checkpoints (resume), else None; a damaged file counts as missing."""
  old = outputs.read_json(folder / 'results.json')
  if old is None or old.get('config') != checkpoint.as_json(config.to_dict()):
    return None
  if old.get('version') != RESULTS_VERSION:
    logging.warning('%s was written by an earlier version of valley_jax, '
                    'whose results meant something else: recomputing it.',
                    folder / 'results.json')
    return None
  if old.get('provenance') != checkpoint.as_json(prov):
    logging.warning('%s was measured on other checkpoints than %s now hold '
                    '(retrained?): recomputing it.', folder / 'results.json',
                    [p.get('workdir') or p.get('weights') for p in prov])
    return None
  return old


def _draw(kind: str, results: dict[str, Any], folder: epath.Path,
          formats: tuple[str, ...] = ('png',)) -> list[str]:
  """Draws a kind's figure files; returns their names."""
  line = plots.provenance_line(results.get('provenance') or [],
                               results.get('code') or rundir.code_version())
  with plots.formats(formats), plots.footer(line):
    paths = registry.STUDIES[kind].figure(results, str(folder))
  return [epath.Path(f).name for f in paths]


def _finish(kind: str, results: dict[str, Any], folder: epath.Path,
            formats: tuple[str, ...]) -> None:
  """Draws the figures, then writes results.json (which names them), so a
  results.json on disk always has its figures beside it."""
  results['figures'] = _draw(kind, results, folder, formats)
  outputs.write_json(folder / 'results.json', results)


def run(config: ml_collections.ConfigDict, workdir: str) -> dict[str, str]:
  """Runs every kind of config.kind; returns kind -> results.json path.

  The runs it measures that are missing (or were stopped before their last
  epoch) are trained first, one after another: config.train_if_missing
  and the entries of config.train_runs (see the module docstring).
  A kind whose results.json already holds this config and was measured on
  the same checkpoints (same fingerprints) is not recomputed, so an
  interrupted probe started again resumes after its last finished kind.
  Figures are drawn by one worker thread while the next kind sweeps; run
  returns once every figure and results.json is written.
  """
  kinds, plan = _validate(config)
  outputs.check_writable(workdir, '--workdir')
  paths = {}
  # A signal stops the kind in flight at once; the finished ones are kept.
  with preemption.graceful(interrupt=True):
    try:
      return _run(config, workdir, kinds, plan, paths)
    except preemption.Preempted:
      if not paths:
        raise
      lost = [k for k in kinds if k not in paths]
      raise preemption.Preempted(
          f'the results of {list(paths)} in {workdir}' + (
              f' ({lost[0]} was stopped and is computed again)'
              if lost else '')) from None


def _run(config, workdir: str, kinds: list[str], plan: list[TrainRun],
         paths: dict[str, str]) -> dict[str, str]:
  """run()'s work once validated; fills `paths` as kinds finish."""
  _train_missing(config, kinds, plan)
  formats = figure_formats(config)
  p = Prober(config, workdir)
  main, pending = None, []
  with concurrent.futures.ThreadPoolExecutor(1, 'figures') as figures:
    for i, kind in enumerate(kinds):
      # Several processes: JAX's preemption service holds SIGTERM, and all
      # processes stop before the same kind.
      if preemption.requested(i):
        raise preemption.Preempted('nothing yet (no kind had finished)')
      folder = epath.Path(workdir) / kind
      prov = _provenance(config, kind, p)
      results = _finished(folder, config, prov)
      if results is None:
        probes_main = _probes_main(registry.STUDIES[kind], config)
        if main is None and probes_main:
          main = (p.weights_subject() if config.get('weights') else
                  p.subject(config.checkpoint, config.epoch))
        p.batch_sizes = main.sweep.batch_sizes if probes_main else None
        # 'float32' is full float32 in every kind (curvature, theory), not
        # only in the sweeps.
        with sweep.matmul_precision(PRECISIONS[config.sweep.dtype]):
          out = _public(registry.STUDIES[kind].run(
              p, main if probes_main else None))
        eval_bs, recal_bs = batch_sizes(config)
        used = p.batch_sizes or {'eval': eval_bs, 'recal': recal_bs}
        results = outputs.finite_or_none({
            'kind': kind, 'version': RESULTS_VERSION,
            **_kind_header(config, kind),
            'provenance': prov, 'code': rundir.code_version(),
            'config': config.to_dict(),
            'precision': precision_of(config),
            'batch_sizes': used, **out})
        folder.mkdir(parents=True, exist_ok=True)
        pending.append(figures.submit(_finish, kind, results, folder,
                                      formats))
      elif not all((folder / f).exists() for f in results.get('figures', ())):
        # Results kept, a figure lost: redraw it.
        pending.append(figures.submit(_draw, kind, results, folder, formats))
      p.bar.write(f'\n== {kind} ({folder}) ==\n{table(results)}')
      paths[kind] = str(folder / 'results.json')
    for f in pending:
      f.result()  # A failed figure or write fails the run.
  p.bar.close()
  return paths
