"""One α column of Table 1 (CIFAR-10), timed, with the whole table projected.

The column is configs/fed_cifar10.py's table at one α: every algorithm of
the table with its default grid (docs/fedsim.md) and 5 seeds, on
synthetic data of CIFAR-10's shapes (or CIFAR-10 from TFDS with --data=tfds).
It runs `valley_jax.fed.runner.table` (compilation cache off) and prints one
JSON line: wall seconds, table.json's timing (compile and run seconds, the
real-step share, runs side by side), the cells, and the projected hours of
the whole table (3 α values; rounds scaled to 200 from --rounds, the
compilation counted once per algorithm).

On a GPU (the column at α = 0.5, 200 rounds):

  python bench/table1_bench.py --rounds=200 \\
      --out=bench/results/table1_gpu_$(date +%F).jsonl

Scaled down on a CPU:

  python bench/table1_bench.py --rounds=1 --clients=20 --n_train=2000 \\
      --seeds=1 --width=0.25
"""

import os
import sys
import tempfile
import time

from absl import app, flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(
    __file__))))

import timing  # pylint: disable=g-import-not-at-top,wrong-import-position
from timing import device as _device  # pylint: disable=g-import-not-at-top,wrong-import-position

from valley_jax import defaults  # pylint: disable=g-import-not-at-top,wrong-import-position
from valley_jax.fed import runner  # pylint: disable=g-import-not-at-top,wrong-import-position

_ALPHA = flags.DEFINE_float('alpha', 0.5, 'The column.')
_ROUNDS = flags.DEFINE_integer('rounds', 200, 'Rounds (Table 1: 200).')
_SEEDS = flags.DEFINE_integer('seeds', 5, 'Seeds 0 .. n-1.')
_CLIENTS = flags.DEFINE_integer('clients', 0, 'Clients (0: the config\'s '
                                '100).')
_N_TRAIN = flags.DEFINE_integer('n_train', 50_000, 'Synthetic training '
                                'images.')
_WIDTH = flags.DEFINE_float('width', 1.0, 'Model width multiplier.')
_DATA = flags.DEFINE_enum('data', 'synthetic', ['synthetic', 'tfds'],
                          'Data source.')
_OUT = flags.DEFINE_string('out', '', 'Append the JSON line here.')


def main(argv):
  del argv
  c = defaults.apply_fed_variant(defaults.fed_config('resnet20', 'cifar10'),
                                 'table')
  c.table.update(alphas=(_ALPHA.value,), seeds=tuple(range(_SEEDS.value)))
  c.fed.rounds = _ROUNDS.value
  c.model.width = _WIDTH.value
  if _CLIENTS.value:
    c.fed.num_clients = _CLIENTS.value
  if _DATA.value == 'synthetic':
    defaults.synthetic_cifar10(c, _N_TRAIN.value)
  c.compile_cache = 'none'
  c.checkpoint_every = max(c.checkpoint_every, _ROUNDS.value)
  with tempfile.TemporaryDirectory() as workdir:
    t0 = time.time()
    out = runner.table(c, workdir)
    wall = time.time() - t0
  spent = out['timing']
  run_s = wall - spent['compile_seconds']
  whole = spent['compile_seconds'] + 3 * run_s * 200 / _ROUNDS.value
  line = {'device': _device(), 'date': time.strftime('%Y-%m-%d'),
          'load_avg': os.getloadavg()[0], 'alpha': _ALPHA.value,
          'rounds': _ROUNDS.value, 'seeds': _SEEDS.value,
          'clients': c.fed.num_clients, 'width': _WIDTH.value,
          'data': _DATA.value, 'cells': len(out['cells']),
          'wall_s': round(wall, 1), 'timing': spent,
          'projected_table_hours': round(whole / 3600, 3)}
  timing.emit(line, _OUT.value)


if __name__ == '__main__':
  app.run(main)
