"""What FedSign's γ means under each reduction of its sign term.

For each model it prints the per-element push of the sign term per round,
from the update rule: one local SGD step moves element i by
η·γ·σ'(θ_i)·c along sign(θt_i), c = 1 ('sum'), 1/T ('tensor_mean', T
parameter tensors) or 1/N ('element_mean', N elements); momentum β makes a
steady push 1/(1 − β) times larger; a round has E·⌈n_k/B⌉ steps. σ'(θ) ≤ ¼,
reached at θ = 0, which is what the numbers below use (an upper bound).

Then, on digits (configs/fed_digits.py, α = 0.5, 30 rounds), it runs FedAvg
and FedSign at γ ∈ {0.001, 0.01, 0.1} under 'tensor_mean' and 'sum' over
--seeds seeds and prints the final test accuracy, mean and sample std.

  python bench/fedsign_scale.py --seeds=5 \\
      --out=bench/results/fedsign_scale_cpu_2cores_$(date +%F).jsonl
"""

import json
import math
import os
import sys
import tempfile
import time

from absl import app, flags
import jax
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(
    __file__))))

from valley_jax import data, defaults, models  # pylint: disable=g-import-not-at-top,wrong-import-position
from valley_jax.fed import runner  # pylint: disable=g-import-not-at-top,wrong-import-position

_SEEDS = flags.DEFINE_integer('seeds', 5, 'Seeds per digits setting.')
_RUNS = flags.DEFINE_bool('runs', True, 'Also train on digits.')
_OUT = flags.DEFINE_string('out', '', 'Also append the JSON lines here.')
_GAMMAS = (0.001, 0.01, 0.1)


def _emit(row):
  line = json.dumps(row)
  print(line, flush=True)
  if _OUT.value:
    with open(_OUT.value, 'a', encoding='utf-8') as f:
      f.write(line + '\n')


def _push(config, input_shape, num_classes, n_train) -> None:
  """One JSON line: the sign term's push per element per round."""
  model = models.from_config(config.model, num_classes, input_shape)
  shapes = jax.eval_shape(model.init, jax.random.key(0),
                          np.zeros((1, *input_shape), np.float32))
  leaves = jax.tree.leaves(shapes['params'])
  t, n = len(leaves), sum(math.prod(x.shape) for x in leaves)
  f = config.fed
  steps = f.local_epochs * math.ceil(n_train / f.num_clients / f.batch_size)
  beta = config.optim.get('momentum', 0.0) or 0.0
  per_step = config.optim.lr * 0.25 / (1 - beta)
  for reduction, c in (('sum', 1.0), ('tensor_mean', 1 / t),
                       ('element_mean', 1 / n)):
    _emit({'model': config.model.name, 'dataset': config.data.name,
           'tensors': t, 'elements': n, 'steps_per_round': steps,
           'lr': config.optim.lr, 'momentum': beta, 'reduction': reduction,
           'push_per_round': {str(g): float(f'{g * c * per_step * steps:.3g}')
                              for g in _GAMMAS}})


def main(argv):
  del argv
  digits = defaults.fed_offline('digits', 'fedsign')
  ds = data.from_config(digits.data)
  _push(digits, ds.input_shape, ds.num_classes, len(ds.y_train))
  cifar = defaults.fed_config('resnet20', 'cifar10')
  _push(cifar, (32, 32, 3), 10, 50_000)
  if not _RUNS.value:
    return
  tmp = tempfile.mkdtemp(prefix='fedsign_scale_')
  settings = [('fedavg', None, None)] + [
      ('fedsign', r, g) for r in ('tensor_mean', 'sum') for g in _GAMMAS]
  for alg, reduction, gamma in settings:
    accs = []
    for seed in range(_SEEDS.value):
      c = defaults.fed_offline('digits', f'{alg},seed{seed}')
      if alg == 'fedsign':
        c.fed.hparams = {'gamma': gamma, 'reduction': reduction}
      t0 = time.time()
      res = runner.run(c, os.path.join(tmp, f'{alg}_{reduction}_{gamma}_'
                                       f'{seed}'))
      accs.append(res['final']['test_accuracy'])
      print(f'{alg} {reduction} {gamma} seed {seed}: {accs[-1]:.4f} '
            f'({time.time() - t0:.0f} s)', file=sys.stderr, flush=True)
    _emit({'dataset': 'digits', 'alpha': c.fed.alpha, 'rounds': c.fed.rounds,
           'algorithm': alg, 'reduction': reduction, 'gamma': gamma,
           'seeds': _SEEDS.value, 'test_accuracy': [round(a, 4) for a in accs],
           'mean': round(float(np.mean(accs)), 4),
           'std_ddof1': round(float(np.std(accs, ddof=1)), 4),
           'date': time.strftime('%Y-%m-%d')})


if __name__ == '__main__':
  app.run(main)
