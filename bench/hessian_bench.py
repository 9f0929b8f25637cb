"""Curvature on matfree against the hand-written code it replaced, on the
digits CNN with BN (runs/default, statistics held fixed as the curvature
study does) and 1,000 training images in batches of 100.

Prints JSON lines: the top eigenvalue by power iteration, Lanczos
(matfree's tridiagonalisation) and the largest SLQ node, with their relative
differences; the time of Lanczos with matfree and, given --old_hessian (a
copy of core/hessian.py before matfree, `git show 982d21f:valley_jax/core/
hessian.py`), with the hand-written loop; and Hutchinson's trace with our
forward-over-forward vᵀHv against matfree's `stochtrace` estimator on HVPs.

python bench/hessian_bench.py --workdir=runs/default \
  --old_hessian=/tmp/hessian_old.py
"""

import importlib.util
import json
import time

import jax
import ml_collections
import numpy as np
from absl import app, flags
from matfree import stochtrace

from bench import timing
from valley_jax import checkpoint, data, models
from valley_jax.core import hessian, sweep

_WORKDIR = flags.DEFINE_string('workdir', 'runs/default', 'A digits run.')
_OLD = flags.DEFINE_string('old_hessian', '', 'core/hessian.py before.')
_STEPS = flags.DEFINE_integer('steps', 20, 'Lanczos steps (and per SLQ probe).')
_PROBES = flags.DEFINE_integer('probes', 8, 'Hutchinson probes.')
_ITERS = flags.DEFINE_integer('iters', 60, 'Power iteration steps.')


def _setup():
  v, cfg = checkpoint.restore_model(_WORKDIR.value)
  ds = data.from_config(ml_collections.ConfigDict(cfg['data']))
  model = models.from_config(ml_collections.ConfigDict(cfg['model']),
                             ds.num_classes, ds.input_shape)
  order = np.random.default_rng(0).permutation(len(ds.y_train))[:1000]
  batches = sweep.make_batches(ds.x_train[order], ds.y_train[order], 100)
  return model, ds, v, batches


def _emit(**row):
  row = {k: float(v) if isinstance(v, (np.floating, jax.Array)) else v
         for k, v in row.items()}
  row.update(device=timing.device(), date=time.strftime('%Y-%m-%d'))
  print(json.dumps(row), flush=True)


def _matfree_trace(loss_fn, params, stats, key, batches, num):
  """tr(H) by matfree's Monte Carlo estimator on HVPs (Rademacher)."""
  def matvec(v, p):
    return hessian.hvp(loss_fn, p, stats, v, batches)
  estimate = stochtrace.estimator_monte_carlo(
      stochtrace.monte_carlo_trace(),
      stochtrace.sampler_signs(params, num=num))
  return estimate(matvec, key, params)


def _timed(fn):
  """(result, first call's seconds incl. compile, second call's seconds)."""
  t = time.perf_counter()
  jax.block_until_ready(fn())
  first = time.perf_counter() - t
  t = time.perf_counter()
  out = jax.block_until_ready(fn())
  return out, first, time.perf_counter() - t


def main(_):
  model, ds, v, batches = _setup()
  p, st = v['params'], v['batch_stats']
  curv = hessian.make_curvature(model, ds.mean, ds.std)
  key = jax.random.key(0)
  steps, probes = _STEPS.value, _PROBES.value
  ritz, first, run = _timed(lambda: curv.lanczos(p, st, key, batches, steps))
  ritz = np.asarray(ritz)
  _emit(what='lanczos_matfree', steps=steps, first_s=first, run_s=run,
        top=float(ritz[-1]))
  if _OLD.value:
    spec = importlib.util.spec_from_file_location('hessian_old', _OLD.value)
    old = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(old)
    fn = jax.jit(lambda p, s, k, d: old.lanczos(curv.loss_fn, p, s, k, d,
                                                steps))
    old_ritz, first, run = _timed(lambda: fn(p, st, key, batches))
    old_ritz = np.asarray(old_ritz)
    _emit(what='lanczos_hand_written', steps=steps, first_s=first,
          run_s=run, top=float(old_ritz[-1]),
          rel_vs_matfree=abs(old_ritz[-1] - ritz[-1]) / abs(ritz[-1]))
  (ours, _), first, run = _timed(lambda: curv.hutchinson(p, st, key, batches,
                                                         probes))
  _emit(what='hutchinson_ours_fwd_fwd', probes=probes, first_s=first,
        run_s=run, trace=float(ours))
  mf = jax.jit(lambda p, k: _matfree_trace(curv.loss_fn, p, st, k, batches,
                                           probes))
  trace, first, run = _timed(lambda: mf(p, key))
  _emit(what='hutchinson_matfree_hvp', probes=probes, first_s=first,
        run_s=run, trace=float(trace))
  (nodes, _), first, run = _timed(lambda: curv.slq(p, st, key, batches,
                                                   steps, 2))
  top_slq = float(np.max(nodes))
  _emit(what='slq', steps=steps, probes=2, first_s=first, run_s=run,
        top=top_slq)
  pi = curv.power_iteration(p, st, key, batches, _ITERS.value)
  top_pi = float(pi.value)
  _emit(what='top_eigenvalue', power_iteration=top_pi,
        power_residual=float(pi.residual), iters=_ITERS.value,
        lanczos=float(ritz[-1]), slq_top_node=top_slq,
        rel_lanczos_vs_power=abs(ritz[-1] - top_pi) / abs(top_pi),
        rel_slq_vs_lanczos=abs(top_slq - ritz[-1]) / abs(ritz[-1]),
        rel_slq_vs_power=abs(top_slq - top_pi) / abs(top_pi))


if __name__ == '__main__':
  app.run(main)
