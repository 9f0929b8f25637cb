"""PROBE workload (issue 10): where the time of a whole study goes.

For each setting it runs, each in a fresh Python process, one after another:

* `probe`: `python probe.py` as a user runs it (wall time from spawn to
  exit, imports included), with a fresh compilation cache directory;
* `probe_rerun`: the same again on the same cache directory (a rerun);
* `split`: the same probe in an instrumented process, its time split into
  start-up (imports), restore, data, compilation, direction building, sweeps,
  host transfers and figures (one JSON line; compile time is taken out of the
  phase it happened in and reported on its own);
* `bare`: the bare script: restore the checkpoint, compile one sweep, run the
  same curves × λ with BN recalibration, directions from one jitted builder,
  no figures, no results files (wall time from spawn to exit);

then one `summary` line with probe / bare and the overhead beyond the pure
sweep time. A `micro` run (add it to --runs) times one curve with BN
folded and not, and 4 curves in one call (K = 4, block coefficients)
against 4 calls. Settings:

* `cpu_default`: configs/probe_default.py on a trained digits CNN (trained
  first into --root if missing; not timed): 59 curves × 21 λ.
* `paper_vgg16`, `paper_resnet20`: Fig. 3 noise_types, 42 curves × 41 λ, 10k
  evaluation + 2k recalibration images of 32×32 synthetic data, bf16, full
  width (the checkpoint is one epoch of training, not timed). --small shrinks
  it for a CPU: width 0.25, 500 + 200 images, 11 λ, 2 noises × 1 scale.

  python bench/probe_bench.py --small \
      --out=bench/results/probe_cpu_2cores_$(date +%F).jsonl      # 2 CPU cores
  python bench/probe_bench.py --runs=probe,probe_rerun,split,bare,micro \
      --out=bench/results/probe_gpu_$(date +%F).jsonl              # one GPU

Prints JSON lines; --out appends them to a file.
"""

import json
import os
import subprocess
import sys
import threading
import time

from absl import app, flags

_HERE = os.path.dirname(os.path.abspath(__file__))
_REPO = os.path.dirname(_HERE)
sys.path.insert(0, _REPO)

_SETTINGS = flags.DEFINE_list(
    'settings', ['cpu_default', 'paper_vgg16', 'paper_resnet20'],
    'Settings to run.')
_SMALL = flags.DEFINE_bool('small', False, 'Shrink the paper settings for a '
                           'CPU (see module doc).')
_ROOT = flags.DEFINE_string('root', '/tmp/valley_probe_bench',
                            'Checkpoints, workdirs and cache directories.')
_RUNS = flags.DEFINE_list(
    'runs', ['probe', 'probe_rerun', 'split', 'bare'],
    "Which runs of each setting; 'micro' adds per-curve sweep times with BN "
    'folded or not and 4 curves in one call or four.')
_OUT = flags.DEFINE_string('out', '', 'Also append the JSON lines here.')
_NOTE = flags.DEFINE_string('note', '', 'A note recorded in every line.')
# Internal: the child processes.
_CHILD = flags.DEFINE_string('child', '',
                             "'split', 'bare' or 'micro' (internal).")
_SETTING = flags.DEFINE_string('setting', '', 'The setting (internal).')
_SPAWNED = flags.DEFINE_float('spawned', 0.0, 'Spawn time (internal).')


# ------------------------------------------------------------------ settings


def _paper_train(model: str, small: bool):
  from valley_jax import defaults
  c = defaults.train_config(model, 'synthetic')
  c.model.width = 0.25 if small else 1.0
  c.data.augment = False
  c.data.kwargs.n_train = 256 if small else 2048
  c.data.kwargs.n_test = 500 if small else 10_000
  c.train.epochs = 1
  c.train.batch_size = 128
  c.train.eval_batch_size = 500
  c.train.keep_epochs = (0, 1)
  return c


def probe_config(setting: str, small: bool, root: str):
  """The probe config of a setting, and its checkpoint workdir."""
  sys.path.insert(0, os.path.join(_REPO, 'configs'))
  import probe_default  # configs/probe_default.py
  if setting == 'cpu_default':
    c = probe_default.get_config()
    ckpt = os.path.join(root, 'default_ckpt')
    c.checkpoint = c.train_if_missing = ckpt
    return c, ckpt, c.train
  from valley_jax import defaults
  model = setting.split('_', 1)[1]
  model = {'vgg16': 'vgg16', 'resnet20': 'resnet20'}[model]
  ckpt = os.path.join(root, f"{setting}{'_small' if small else ''}_ckpt")
  c = defaults.probe_config(ckpt)
  c.kind = 'noise_types'
  c.sweep.dtype = 'bfloat16'
  c.sweep.num_points = 11 if small else 41
  c.sweep.recal_samples = 200 if small else 2000
  if small:
    c.noise_types.noises = ('gaussian', 'ones')
    c.noise_types.scales = (1.0,)
  return c, ckpt, _paper_train(model, small)


def _ensure_checkpoint(ckpt: str, train_cfg) -> None:
  from valley_jax import checkpoint
  from valley_jax.train import runner
  if not checkpoint.epochs(ckpt):
    runner.run(train_cfg, ckpt)


def _overrides(c) -> list[str]:
  """--config.x=v flags that turn probe_default.py into the setting."""
  flat = {'checkpoint': c.checkpoint, 'train_if_missing': c.train_if_missing,
          'kind': c.kind, 'sweep.dtype': c.sweep.dtype,
          'sweep.num_points': c.sweep.num_points,
          'sweep.recal_samples': c.sweep.recal_samples,
          'sweep.recal_batch_size': c.sweep.recal_batch_size,
          'sweep.eval_batch_size': c.sweep.eval_batch_size,
          'noise_types.noises': str(tuple(c.noise_types.noises)),
          'noise_types.scales': str(tuple(c.noise_types.scales))}
  return [f'--config.{k}={v}' for k, v in flat.items()]


# -------------------------------------------------------------- split child


class _Clock:
  """Seconds per phase; compile time is charged to 'compile' instead."""

  def __init__(self):
    self.t = {}
    self.compile_in = {}
    self.phase = 'other'

  def add(self, phase, dt):
    self.t[phase] = self.t.get(phase, 0.0) + dt

  def timed(self, phase, fn, block=False):
    import jax

    def wrapper(*a, **k):
      # Compile events come from the main thread; the figure worker's phase
      # is timed but does not take them.
      main = threading.current_thread() is threading.main_thread()
      outer = self.phase
      if main:
        self.phase = phase
      t = time.perf_counter()
      try:
        out = fn(*a, **k)
        if block:
          jax.block_until_ready(out)
        return out
      finally:
        self.add(phase, time.perf_counter() - t)
        if main:
          self.phase = outer
    return wrapper


_COMPILE_EVENTS = ('/jax/core/compile/jaxpr_trace_duration',
                   '/jax/core/compile/jaxpr_to_mlir_module_duration',
                   '/jax/core/compile/backend_compile_duration')


def _instrument(clock: _Clock):
  """Wraps the probe's phases (the code itself is unchanged)."""
  import jax
  import numpy as np

  from valley_jax import checkpoint, data
  from valley_jax.core import sweep as landscape
  from valley_jax.probe import runner as probe_runner
  from valley_jax.probe.studies import common

  def on_event(name, secs, **_):
    if name in _COMPILE_EVENTS:
      clock.compile_in[clock.phase] = clock.compile_in.get(clock.phase,
                                                           0.0) + secs
  jax.monitoring.register_event_duration_secs_listener(on_event)
  checkpoint.restore_model = clock.timed('restore', checkpoint.restore_model,
                                         True)
  data.from_config = clock.timed('data', data.from_config)
  landscape.make_batches = clock.timed('data', landscape.make_batches, True)
  landscape.make_recal_batches = clock.timed(
      'data', landscape.make_recal_batches, True)
  common._noise_direction = clock.timed(  # pylint: disable=protected-access
      'directions', common._noise_direction, True)  # pylint: disable=protected-access
  common._special_direction = clock.timed(  # pylint: disable=protected-access
      'directions', common._special_direction, True)  # pylint: disable=protected-access
  probe_runner._finish = clock.timed('figures', probe_runner._finish)  # pylint: disable=protected-access

  def call(self, params, batch_stats, directions, coeffs_PxK):
    out = clock.timed('sweeps', self.sweep, True)(
        params, batch_stats, directions, coeffs_PxK, self.eval_data,
        self.recal_x)
    return clock.timed('transfer', lambda: {
        k: np.asarray(v, np.float64) for k, v in out.items()})()
  landscape.Setting.__call__ = call


def split_child(setting: str, small: bool, root: str, spawned: float):
  clock = _Clock()
  _instrument(clock)
  from valley_jax import compile_cache
  from valley_jax.probe import runner as probe_runner
  c, _, _ = probe_config(setting, small, root)
  c.compile_cache = 'none'
  compile_cache.enable(c.compile_cache)
  startup = time.time() - spawned  # Interpreter, imports, instrumenting.
  workdir = os.path.join(root, f'{setting}_split_{os.getpid()}')
  t = time.perf_counter()
  clock.timed('run', probe_runner.run)(c, workdir)
  run_s = time.perf_counter() - t
  wall = time.time() - spawned
  phases = dict(clock.t)
  phases.pop('run', None)
  comp = clock.compile_in
  net = {k: round(v - comp.get(k, 0.0), 3) for k, v in phases.items()}
  pure = net.get('sweeps', 0.0)
  return dict(
      run='split', startup_s=round(startup, 2),
      run_s=round(run_s, 2), wall_s=round(wall, 2), phases_net_s=net,
      compile_s=round(sum(comp.values()), 2),
      compile_by_phase_s={k: round(v, 2) for k, v in comp.items()},
      pure_sweep_s=round(pure, 2),
      overhead_frac=round(1 - pure / wall, 3),
      # The figure worker overlaps the sweeps: its time is not all on the
      # critical path; 'other' is the remainder of run() (results, tables,
      # provenance, the wait for the last figure).
      other_s=round(run_s - sum(v for k, v in phases.items()
                                if k != 'figures'), 2))


# --------------------------------------------------------------- bare child


def bare_child(setting: str, small: bool, root: str, spawned: float):
  """Restore, one sweep compiled, the same curves × λ, one jitted builder."""
  import jax
  import jax.numpy as jnp
  import ml_collections
  import numpy as np
  from jax import flatten_util

  from valley_jax import checkpoint, data, models
  from valley_jax.core import directions
  from valley_jax.core import sweep as landscape
  from valley_jax.probe import prober
  c, ckpt, _ = probe_config(setting, small, root)
  sw = c.sweep
  variables, cfg = checkpoint.restore_model(ckpt)
  theta, stats = variables['params'], variables['batch_stats']
  theta0 = checkpoint.restore_model(ckpt, 0)[0]['params']
  ds = data.from_config(ml_collections.ConfigDict(cfg['data']))
  model = models.from_config(ml_collections.ConfigDict(cfg['model']),
                             ds.num_classes, ds.input_shape)
  eval_bs, recal_bs = prober.batch_sizes(c)
  ev = landscape.make_batches(ds.x_test, ds.y_test, eval_bs)
  n = min(sw.recal_samples, len(ds.y_train))
  rb = min(recal_bs, n)
  order = np.random.default_rng(c.seed).permutation(len(ds.y_train))
  rx = landscape.make_recal_batches(ds.x_train[order], n // rb * rb, rb)
  sweep = landscape.make_sweep(
      model, ds.mean, ds.std, recal=bool(stats),
      dtype=prober.DTYPES[sw.dtype],
      precision=prober.PRECISIONS[sw.dtype])
  noises = list(directions.NOISES)
  sizes = jnp.array([x.size for x in jax.tree.leaves(theta)], jnp.int32)

  @jax.jit
  def build(root, seed, which, ratio, theta, theta0):
    """which < 7: noise `which`, a fraction `ratio` given θ's sign; else
    special direction `which - 7`; NS-normalised (flat vectors)."""
    t, unravel = flatten_util.ravel_pytree(theta)
    t0 = flatten_util.ravel_pytree(theta0)[0]
    key = directions.direction_key(root, seed, jnp.minimum(which, 6))
    seg = jnp.repeat(jnp.arange(sizes.shape[0]), sizes,
                     total_repeat_length=t.shape[0])
    cen = t - (jax.ops.segment_sum(t, seg, sizes.shape[0]) / sizes)[seg]

    def sign(x):
      return jnp.where(x >= 0, 1.0, -1.0)

    def sgp(x):
      return (x > 0).astype(x.dtype)

    branches = [lambda k, f=directions.NOISES[nm]: f(k, t.shape, t.dtype)
                for nm in noises]
    branches += [lambda k: t0, lambda k: t, lambda k: sign(t),
                 lambda k: sign(cen), lambda k: sgp(t), lambda k: sgp(cen)]
    eps = jax.lax.switch(which, branches, key)
    chosen = jax.random.bernoulli(jax.random.fold_in(key, 7919), ratio,
                                  eps.shape)
    eps = jnp.where(chosen, jnp.abs(eps) * sign(t), eps)
    return unravel(eps * jnp.linalg.norm(t) / jnp.linalg.norm(eps))

  root_key = jax.random.key(c.seed)
  curves = []  # (which, ratio, scale)
  for kind in c.kind.split(','):
    if kind == 'noise_types':
      curves += [(noises.index(nm), float(sc), s)
                 for s in c.noise_types.scales for nm in c.noise_types.noises
                 for sc in (0, 1)]
    elif kind == 'sign_ratio':
      curves += [(noises.index(c.sign_ratio.noise), float(r),
                  c.sign_ratio.scale) for r in c.sign_ratio.ratios]
    elif kind == 'special':
      curves += [(7 + directions.SPECIAL.index(d), 0.0, c.special.scale)
                 for d in c.special.directions]
  lams = np.linspace(sw.lam_min, sw.lam_max, sw.num_points)
  for which, ratio, scale in curves:
    d = build(root_key, 0, which, ratio, theta, theta0)
    out = sweep(theta, stats, [d], (lams * scale)[:, None], ev, rx)
    np.asarray(out['loss']), np.asarray(out['error'])
  return dict(run='bare', curves=len(curves), points=len(lams),
              wall_s=round(time.time() - spawned, 2))


# -------------------------------------------------------------- micro child


def micro_child(setting: str, small: bool, root: str, spawned: float):
  """Per-curve sweep time: BN folded or not; 4 curves in 1 call or 4."""
  del spawned
  import numpy as np
  from timing import best

  from valley_jax.probe import prober
  from valley_jax.probe.studies import common
  c, _, _ = probe_config(setting, small, root)
  lams = np.linspace(c.sweep.lam_min, c.sweep.lam_max, c.sweep.num_points)
  out = {'run': 'micro', 'points': len(lams)}
  for fold in (False, True):
    c.sweep.fold_bn = fold
    p = prober.Prober(c)
    s = p.subject(c.checkpoint)
    d = [common.make_direction(p, s, i, noise='gaussian', sign_consistent=True)
         for i in range(4)]
    one = lambda: s.sweep.sweep(s.params, s.batch_stats, d[:1],  # noqa: E731
                                lams[:, None], s.sweep.eval_data,
                                s.sweep.recal_x)['loss']
    out[f'curve_fold_{fold}_s'] = round(best(one, 3)[1], 3)
    if fold:
      blk = np.zeros((4 * len(lams), 4))
      for i in range(4):
        blk[i * len(lams):(i + 1) * len(lams), i] = lams
      four = lambda: s.sweep.sweep(s.params, s.batch_stats, d,  # noqa: E731
                                   blk, s.sweep.eval_data,
                                   s.sweep.recal_x)['loss']
      out['four_curves_one_call_s'] = round(best(four, 2)[1], 3)
      out['four_curves_four_calls_s'] = round(best(
          lambda: [one() for _ in range(4)], 2)[1], 3)
  return out


# -------------------------------------------------------------------- parent


def _spawn(args: list[str]) -> tuple[float, str]:
  t = time.time()
  proc = subprocess.run([sys.executable, *args], cwd=_REPO, check=True,
                        capture_output=True, text=True)
  return time.time() - t, proc.stdout


def _child(kind: str, setting: str) -> dict:
  args = [os.path.abspath(__file__), f'--child={kind}',
          f'--setting={setting}', f'--root={_ROOT.value}',
          f'--small={_SMALL.value}', f'--spawned={time.time()}']
  wall, out = _spawn(args)
  line = json.loads(out.strip().splitlines()[-1])
  line['process_wall_s'] = round(wall, 2)
  return line


def _emit(line: dict, meta: dict) -> None:
  text = json.dumps({**meta, **line})
  print(text, flush=True)
  if _OUT.value:
    with open(_OUT.value, 'a') as f:
      f.write(text + '\n')


def run_setting(setting: str, meta: dict) -> None:
  c, ckpt, train_cfg = probe_config(setting, _SMALL.value, _ROOT.value)
  _ensure_checkpoint(ckpt, train_cfg)
  meta = {**meta, 'setting': setting,
          'small': _SMALL.value and setting != 'cpu_default'}
  cache = os.path.join(_ROOT.value, f'cache_{setting}_{os.getpid()}')
  res = {}
  for run in _RUNS.value:
    load = os.getloadavg()
    if run in ('probe', 'probe_rerun'):
      work = os.path.join(_ROOT.value, f'{setting}_{run}_{os.getpid()}')
      wall, _ = _spawn(['probe.py', '--config=configs/probe_default.py',
                        f'--workdir={work}', f'--config.compile_cache={cache}',
                        *_overrides(c)])
      line = {'run': run, 'wall_s': round(wall, 2)}
    else:
      line = _child(run, setting)
    line['loadavg'] = [round(x, 2) for x in load]
    res[run] = line
    _emit(line, meta)
  if 'probe' in res and 'bare' in res:
    summary = {'run': 'summary',
               'probe_over_bare': round(res['probe']['wall_s'] /
                                        res['bare']['process_wall_s'], 3)}
    if 'probe_rerun' in res:
      summary['rerun_over_bare'] = round(
          res['probe_rerun']['wall_s'] / res['bare']['process_wall_s'], 3)
    if 'split' in res:
      summary['overhead_frac'] = res['split']['overhead_frac']
    _emit(summary, meta)


def main(argv):
  del argv
  if _CHILD.value:
    fn = {'split': split_child, 'bare': bare_child,
          'micro': micro_child}[_CHILD.value]
    print(json.dumps(fn(_SETTING.value, _SMALL.value, _ROOT.value,
                        _SPAWNED.value)), flush=True)
    return
  import jax
  from timing import device
  os.makedirs(_ROOT.value, exist_ok=True)
  meta = {'bench': 'probe', 'device': device(), 'devices': jax.device_count(),
          'cpus': os.cpu_count(), 'date': time.strftime('%Y-%m-%d'),
          'note': _NOTE.value}
  for setting in _SETTINGS.value:
    run_setting(setting, meta)


if __name__ == '__main__':
  app.run(main)
