"""SIMPLEX workload: the overhead of the `simplex` kind over what it computes.

Two measurements on the digits CNN of configs/probe_simplex.py (four runs of
configs/digits_cnn.py:seed0..3; trained into --root first when missing, not
timed):

* `sweep`: the study's grid part (every raw face and every triangle of a
  complex with two connectors, both centres, the sweep call and the
  summaries) against the bare sweep call it makes
  (the same [P, K] coefficients, directions and data, built beforehand).
  Goal: ≤ 1.2×.
* `step`: one connector training step (a point drawn from the complex, the
  forward and backward pass in train mode, the optimiser on the connector;
  one sample per step, no volume term)
  against a plain train step of the same model (core/steps.make_train_step),
  batch 64, both jitted, 50 steps per timing. Goal: ≤ 1.5×.

  python bench/simplex_bench.py \
      --out=bench/results/simplex_cpu_2cores_$(date +%F).jsonl

Prints JSON lines (best of --repeats timings after a warm-up call, the two
functions compared called in turn); --out
appends them to a file.
"""

import datetime
import os
import sys

from absl import app, flags

_HERE = os.path.dirname(os.path.abspath(__file__))
_REPO = os.path.dirname(_HERE)
sys.path.insert(0, _REPO)
sys.path.insert(0, _HERE)

_ROOT = flags.DEFINE_string('root', '/tmp/valley_simplex_bench',
                            'Where the four digits runs are (trained if '
                            'missing).')
_REPEATS = flags.DEFINE_integer('repeats', 5, 'Timed calls after the first.')
_STEPS = flags.DEFINE_integer('steps', 50, 'Train steps per timing.')
_OUT = flags.DEFINE_string('out', '', 'Also append the JSON lines here.')
_NOTE = flags.DEFINE_string('note', '', 'A note recorded in every line.')


def _config(root: str):
  import importlib.util  # pylint: disable=g-import-not-at-top
  spec = importlib.util.spec_from_file_location(
      'probe_simplex', os.path.join(_REPO, 'configs', 'probe_simplex.py'))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  c = module.get_config()
  c.simplex.checkpoints = tuple(os.path.join(root, os.path.basename(w))
                                for w in c.simplex.checkpoints)
  return c


def _subjects(c):
  from valley_jax import checkpoint, defaults  # pylint: disable=g-import-not-at-top
  from valley_jax.probe import prober  # pylint: disable=g-import-not-at-top
  from valley_jax.probe.studies import members  # pylint: disable=g-import-not-at-top
  from valley_jax.train import runner  # pylint: disable=g-import-not-at-top
  for seed, w in enumerate(c.simplex.checkpoints):
    if not checkpoint.epochs(w):
      runner.run(defaults.digits_cnn(f'seed{seed}'), w)
  p = prober.Prober(c)
  return p, members.solutions(p)


def _once(fn) -> float:
  import time  # pylint: disable=g-import-not-at-top
  import jax  # pylint: disable=g-import-not-at-top
  t = time.perf_counter()
  jax.block_until_ready(fn())
  return time.perf_counter() - t


def _interleaved(fn_a, fn_b, repeats: int):
  """((first call, best of `repeats`) of fn_a, the same of fn_b), their
  calls alternating so that the load of the shared cores weighs on both."""
  first = _once(fn_a), _once(fn_b)
  times_a, times_b = [], []
  for _ in range(repeats):
    times_a.append(_once(fn_a))
    times_b.append(_once(fn_b))
  return (first[0], min(times_a)), (first[1], min(times_b))


def _sweep_lines(p, subs, repeats: int):
  import jax  # pylint: disable=g-import-not-at-top
  import optax  # pylint: disable=g-import-not-at-top
  from valley_jax.core import subspace  # pylint: disable=g-import-not-at-top
  from valley_jax.probe.studies import simplex  # pylint: disable=g-import-not-at-top
  c = p.config.simplex
  sols = [s.params for s in subs]
  centre = jax.tree.map(lambda *a: sum(a) / len(a), *sols)
  conns = [centre, jax.tree.map(lambda a, b: 0.5 * (a + b), centre, sols[0])]
  s0 = subs[0]

  def study_part():
    grid = simplex.make_grid(len(sols), 2, c.resolution)
    out = simplex.evaluate_points(s0.sweep, sols + conns, s0.batch_stats,
                                  grid.points)
    return simplex.summarize(grid, out['loss'], out['error'])

  grid = simplex.make_grid(len(sols), 2, c.resolution)
  dirs = [optax.tree.sub(v, sols[0]) for v in sols[1:] + conns]
  coeffs = subspace.sweep_coeffs(grid.points)
  st = s0.sweep

  def bare():
    return st.sweep(sols[0], s0.batch_stats, dirs, coeffs, st.eval_data,
                    st.recal_x)

  (first_b, best_b), (first_s, best_s) = _interleaved(bare, study_part,
                                                     repeats)
  yield {'run': 'sweep', 'points': int(len(grid.points)),
         'resolution': c.resolution, 'first_bare_s': round(first_b, 3),
         'bare_s': round(best_b, 4), 'first_study_s': round(first_s, 3),
         'study_s': round(best_s, 4), 'ratio': round(best_s / best_b, 3),
         'goal': 1.2, 'per_point_ms': round(1e3 * best_b / len(grid.points),
                                            2)}


def _step_lines(subs, steps_per_timing: int, repeats: int):
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  import ml_collections  # pylint: disable=g-import-not-at-top
  from valley_jax.core import steps, subspace  # pylint: disable=g-import-not-at-top
  s0 = subs[0]
  ds, model = s0.dataset, s0.model
  optim = ml_collections.ConfigDict(dict(name='sgd', lr=0.05, momentum=0.9,
                                         weight_decay=5e-4))
  tx, _ = steps.make_optimizer(optim, 10_000)
  x, y = jnp.asarray(ds.x_train[:64]), jnp.asarray(ds.y_train[:64])
  key = jax.random.key(0)
  plain = jax.jit(steps.make_train_step(model, tx, ds.mean, ds.std, False))
  sols = subspace.stack([s.params for s in subs])
  simplices = subspace.complex_simplices(len(subs), 1)
  conn = jax.jit(subspace.make_vertex_step(model, tx, simplices, ds.mean,
                                           ds.std))
  stats = jax.tree.map(jnp.zeros_like, s0.batch_stats)

  def run_plain():
    state = steps.init_state({'params': s0.params,
                              'batch_stats': s0.batch_stats}, tx)
    for _ in range(steps_per_timing):
      state, m = plain(state, x, y, key)
    return m['loss']

  def run_conn():
    c0 = subspace.centroid(sols)
    state = steps.init_state({'params': c0, 'batch_stats': {}}, tx)
    for _ in range(steps_per_timing):
      state, m = conn(state, sols, stats, x, y, key)
    return m['loss']

  (first_p, best_p), (first_c, best_c) = _interleaved(run_plain, run_conn,
                                                     repeats)
  yield {'run': 'step', 'batch': 64, 'steps': steps_per_timing,
         'first_plain_s': round(first_p, 3),
         'plain_ms': round(1e3 * best_p / steps_per_timing, 3),
         'first_connector_s': round(first_c, 3),
         'connector_ms': round(1e3 * best_c / steps_per_timing, 3),
         'ratio': round(best_c / best_p, 3), 'goal': 1.5}


def main(argv):
  del argv
  import jax  # pylint: disable=g-import-not-at-top
  import timing  # pylint: disable=g-import-not-at-top
  c = _config(_ROOT.value)
  p, subs = _subjects(c)
  head = {'bench': 'simplex', 'device': timing.device(),
          'devices': jax.device_count(), 'cpus': os.cpu_count(),
          'date': datetime.date.today().isoformat(), 'note': _NOTE.value}
  lines = list(_sweep_lines(p, subs, _REPEATS.value)) + list(
      _step_lines(subs, _STEPS.value, _REPEATS.value))
  for line in lines:
    timing.emit({**head, **line, 'loadavg': [
        round(v, 2) for v in os.getloadavg()]}, _OUT.value)


if __name__ == '__main__':
  app.run(main)
