"""pfl-research's CIFAR-10 benchmark (configs/fed_pfl_cifar10.py), timed.

Granqvist et al. (NeurIPS 2024 Datasets and Benchmarks) time this setup
(1,000 clients × 50 IID images, cohort 50, 1,500 rounds, 1 local epoch,
batch 10, client SGD lr 0.1, server lr 1.0, central evaluation every 10
rounds, their simple CNN) and report 7-72× over other frameworks. This
script runs it with `valley_jax.fed.runner.run` (the persistent compilation
cache off) and prints one JSON line: wall seconds, the first round
(compilation included), rounds/s over the later rounds (evaluation rounds
included), the projection to 1,500 rounds, device and sizes.

On a GPU, the whole benchmark (real CIFAR-10 where TFDS has it):

  python bench/pfl_bench.py --rounds=1500 --data=tfds \\
      --out=bench/results/pfl_gpu_$(date +%F).jsonl

Scaled down on a CPU (synthetic data of CIFAR's shapes):

  python bench/pfl_bench.py --rounds=20 --clients=200 --n_train=10000
"""

import os
import sys
import tempfile
import time

import numpy as np
from absl import app, flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(
    __file__))))

import timing  # pylint: disable=g-import-not-at-top,wrong-import-position
from timing import device as _device  # pylint: disable=g-import-not-at-top,wrong-import-position

from valley_jax import defaults, outputs, rundir  # pylint: disable=g-import-not-at-top,wrong-import-position
from valley_jax.fed import runner  # pylint: disable=g-import-not-at-top,wrong-import-position

_ROUNDS = flags.DEFINE_integer('rounds', 1500, 'Rounds (the benchmark: '
                               '1,500).')
_CLIENTS = flags.DEFINE_integer('clients', 1000, 'Clients (1,000).')
_N_TRAIN = flags.DEFINE_integer('n_train', 50_000, 'Synthetic training '
                                'images (50 per client in the benchmark).')
_DATA = flags.DEFINE_enum('data', 'synthetic', ['synthetic', 'tfds'],
                          'Random CIFAR-shaped data, or CIFAR-10 from TFDS.')
_DATA_DIR = flags.DEFINE_string('data_dir', '', 'TFDS data_dir.')
_OUT = flags.DEFINE_string('out', '', 'Append the JSON line here.')


def main(argv):
  del argv
  c = defaults.fed_pfl_cifar10(
      ('synthetic,' if _DATA.value == 'synthetic' else '') +
      f'rounds{_ROUNDS.value},clients{_CLIENTS.value}')
  if _DATA.value == 'synthetic':
    c.data.kwargs.update(n_train=_N_TRAIN.value)
  if _DATA_DIR.value:
    c.data.data_dir = _DATA_DIR.value
  c.compile_cache = 'none'
  with tempfile.TemporaryDirectory() as workdir:
    t0 = time.time()
    res = runner.run(c, workdir)
    wall = time.time() - t0
    rows = outputs.read_jsonl(rundir.metrics_path(workdir))
  later = [r['seconds'] for r in rows[1:]]
  per_round = float(np.mean(later)) if later else None
  line = {'device': _device(), 'date': time.strftime('%Y-%m-%d'),
          'load_avg': os.getloadavg()[0], 'data': _DATA.value,
          'clients': _CLIENTS.value, 'cohort': round(
              c.fed.fraction * _CLIENTS.value), 'rounds': _ROUNDS.value,
          'wall_s': round(wall, 2), 'first_round_s': rows[0]['seconds'],
          'rounds_per_s': (1 / per_round) if per_round else None,
          'projected_1500_rounds_s': (rows[0]['seconds'] + 1499 * per_round
                                      if per_round else None),
          'final_test_accuracy': res['final']['test_accuracy']}
  timing.emit(line, _OUT.value)


if __name__ == '__main__':
  app.run(main)
