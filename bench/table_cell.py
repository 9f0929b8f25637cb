"""TABLE-1 workload of BENCHMARKS.md: one cell of Table 1, timed end to end.

The cell is configs/fed_cifar10.py (CIFAR ResNet20, K = 100 clients, Q = 10%
per round, E = 5 local epochs, B = 64, local SGD LR 0.03, momentum 0.9,
weight decay 5e-4, Dirichlet α = 0.5, augmentation, test evaluation every
round, 200 rounds) with --algorithm (default fedsign, γ = 0.01,
'tensor_mean') and one change: config.data is the `synthetic` source at
CIFAR-10's shapes, 50,000 training and 10,000 test images of 32×32×3 in 10
classes (class prototypes plus noise, so it is learnable). They are float32
where CIFAR-10 is uint8: the same steps, 4× the bytes of the client data on
the device. The script calls `valley_jax.fed.runner.run(config, workdir)`,
what `python fedsim.py` runs, without the persistent compilation cache, so
the first round's time includes the cold compilation.

It prints (and with --out appends) one JSON line: total wall seconds of
`run` (data, partition, compilation, rounds, evaluations, checkpoints,
export), the first round's seconds (compilation included), the mean seconds
of the later rounds, their projection to --rounds, device, date, algorithm,
rounds and the sizes (the largest client M sets every client's scan length
E·⌈M/B⌉: idle steps are masked, not skipped). A round's seconds are those
of metrics.jsonl: the round and its evaluation, without the checkpoint.

The full cell, on one H100/H200:

  python bench/table_cell.py --rounds=200

(add --out=bench/results/table_cell_gpu_$(date +%F).jsonl to record it).
On a CPU only a few rounds of a scaled cell, to prove it runs, e.g.

  python bench/table_cell.py --rounds=2 --epochs=1 \\
      --out=bench/results/table_cell_cpu_2cores_$(date +%F).jsonl
"""

import json
import os
import resource
import shutil
import sys
import tempfile
import time

import jax
import numpy as np
from absl import app, flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(
    __file__))))

from timing import device as _device  # pylint: disable=g-import-not-at-top,wrong-import-position

from valley_jax import defaults, outputs, rundir  # pylint: disable=g-import-not-at-top,wrong-import-position
from valley_jax.fed import runner  # pylint: disable=g-import-not-at-top,wrong-import-position

_ROUNDS = flags.DEFINE_integer('rounds', 200, 'Rounds (Table 1: 200).')
_ALGORITHM = flags.DEFINE_string('algorithm', 'fedsign',
                                 'An algorithm of valley_jax.fed.')
_VARIANT = flags.DEFINE_string(
    'variant', '', "More fed config variants, e.g. 'gamma0.1,alpha10' "
    '(valley_jax.defaults.apply_fed_variant).')
_WORKDIR = flags.DEFINE_string('workdir', '', 'Run folder (default: a '
                               'temporary one, deleted afterwards).')
_OUT = flags.DEFINE_string('out', '', 'Also append the JSON line here.')
_EPOCHS = flags.DEFINE_integer('epochs', 0, 'Local epochs (0: the '
                               "config's 5). Only to scale a CPU run.")
_CLIENTS = flags.DEFINE_integer('clients', 0, 'Clients K (0: the config\'s '
                                '100). Only to scale a CPU run.')
_N_TRAIN = flags.DEFINE_integer('n_train', 50_000, 'Training images.')
_N_TEST = flags.DEFINE_integer('n_test', 10_000, 'Test images.')


def cell_config():
  """configs/fed_cifar10.py's cell on synthetic CIFAR-10-shaped data."""
  c = defaults.apply_fed_variant(defaults.fed_config('resnet20', 'cifar10'),
                                 ','.join(filter(None, (_ALGORITHM.value,
                                                        _VARIANT.value))))
  c.data.name = 'synthetic'
  c.data.kwargs.update({'shape': (32, 32, 3), 'num_classes': 10,
                        'n_train': _N_TRAIN.value, 'n_test': _N_TEST.value})
  c.fed.rounds = _ROUNDS.value
  if _EPOCHS.value:
    c.fed.local_epochs = _EPOCHS.value
  if _CLIENTS.value:
    c.fed.num_clients = _CLIENTS.value
  return c


def _cpu_seconds() -> float:
  r = resource.getrusage(resource.RUSAGE_SELF)
  return r.ru_utime + r.ru_stime


def _summary(config, workdir: str, seconds: float, results) -> dict:
  """The JSON line of one timed run."""
  rows = outputs.read_jsonl(rundir.metrics_path(workdir))
  per_round = [r['seconds'] for r in rows]
  later = per_round[1:]
  counts = results['partition']['counts']
  f = config.fed
  mean_later = float(np.mean(later)) if later else None
  return {
      'bench': 'table_cell', 'config': 'configs/fed_cifar10.py',
      'data': f'synthetic float32 32x32x3, {_N_TRAIN.value} train, '
              f'{_N_TEST.value} test, 10 classes',
      'model': config.model.name, 'algorithm': results['algorithm'],
      'hparams': results['hparams'], 'alpha': f.alpha,
      'clients': f.num_clients, 'fraction': f.fraction,
      'local_epochs': f.local_epochs, 'batch_size': f.batch_size,
      'dtype': f.dtype, 'rounds': len(rows),
      'client_max_samples': int(max(counts)),
      'client_mean_samples': round(float(np.mean(counts)), 1),
      'total_seconds': round(seconds, 2),
      'first_round_seconds': round(per_round[0], 2),
      'mean_round_seconds_after_first': (round(mean_later, 3)
                                         if later else None),
      'projected_200_rounds_seconds': (
          round(per_round[0] + 199 * mean_later, 1) if later else None),
      'final_test_accuracy': results['final']['test_accuracy'],
      'device': _device(), 'devices': jax.device_count(),
      'date': time.strftime('%Y-%m-%d')}


def main(argv):
  del argv
  config = cell_config()
  workdir = _WORKDIR.value or tempfile.mkdtemp(prefix='table_cell_')
  load0, cpu0, t0 = os.getloadavg()[0], _cpu_seconds(), time.perf_counter()
  results = runner.run(config, workdir)
  seconds = time.perf_counter() - t0
  # Other jobs on the machine slow a CPU run: the load average and the CPU
  # seconds this process got say how much.
  line = json.dumps({
      **_summary(config, workdir, seconds, results),
      'cpu_seconds': round(_cpu_seconds() - cpu0, 1),
      'cpus': os.cpu_count(),
      'load_average_1min': [round(load0, 2), round(os.getloadavg()[0], 2)]})
  print(line, flush=True)
  if _OUT.value:
    with open(_OUT.value, 'a', encoding='utf-8') as f:
      f.write(line + '\n')
  if not _WORKDIR.value:
    shutil.rmtree(workdir, ignore_errors=True)


if __name__ == '__main__':
  app.run(main)
