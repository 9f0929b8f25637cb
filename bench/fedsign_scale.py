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

With --push it instead MEASURES the push of one round (about 6 min on 2 CPU
cores): from the same θt (the config's θ0), the same client data and the
same keys (the engine is deterministic given (seed, round, client)), one
client trains one round with FedAvg and with FedSign(γ), through
`fed.make_round` on a one-client `ClientData`; d = θ_FedSign − θ_FedAvg over
the parameters. Per (config, reduction, γ) one JSON line: the push along
the sign, mean sign(θt)·d over all elements; mean |d|; both relative to
mean |θt| (overall, and the median over tensors with θt ≠ 0 of the
per-tensor ratio); the CE step mean |θ_FedAvg − θt|; the arithmetic bound
above. γ = 0 under FedSign is the control (d ≈ 0: the comparison is exact);
a last line compares FedAvg with the seed + 1 (other shuffling and
augmentation keys) with FedAvg: the scale of SGD noise. On ResNet20 mean |d|
includes a chaotic part: any γ ≥ 1e-6 decorrelates the two trajectories to
mean |d| ≈ 0.003 within a round (bench/README.md), so the systematic push
is `push_along_sign`, whose noise floor there is about 1e-5.
Configs: configs/fed_digits.py (a client of the mean size, 72 digits) and
configs/fed_cifar10.py's ResNet20 on synthetic uint8 32×32×3 images of 10
classes (a client of 50,000 / 100 = 500 samples; E, B, LR, momentum, weight
decay and augmentation from the config; --epochs overrides E).

  python bench/fedsign_scale.py --push \\
      --out=bench/results/fedsign_push_cpu_2cores_$(date +%F).jsonl
"""

import json
import math
import os
import sys
import tempfile
import time

import flax
import jax
import numpy as np
from absl import app, flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(
    __file__))))

from timing import device as _device  # pylint: disable=g-import-not-at-top,wrong-import-position

from valley_jax import data, defaults, fed, models  # pylint: disable=g-import-not-at-top,wrong-import-position
from valley_jax.core import steps  # pylint: disable=g-import-not-at-top,wrong-import-position
from valley_jax.fed import runner  # pylint: disable=g-import-not-at-top,wrong-import-position

_GAMMAS = (0.001, 0.01, 0.1)
_SEEDS = flags.DEFINE_integer('seeds', 5, 'Seeds per digits setting.')
_RUNS = flags.DEFINE_bool('runs', True, 'Also train on digits.')
_OUT = flags.DEFINE_string('out', '', 'Also append the JSON lines here.')
_PUSH = flags.DEFINE_bool('push', False, 'Measure the push of one round '
                          'instead (see the module doc).')
_PUSH_CONFIGS = flags.DEFINE_list('push_configs', ['digits', 'cifar10'],
                                  'With --push: digits and/or cifar10.')
_REDUCTIONS = flags.DEFINE_list('reductions', ['tensor_mean', 'sum'],
                                'With --push: FedSign reductions.')
_EPOCHS = flags.DEFINE_integer('epochs', 0, 'With --push: local epochs '
                               '(0: the config\'s).')
_PUSH_GAMMAS = flags.DEFINE_list('gammas', [str(g) for g in _GAMMAS],
                                 'With --push: the γ values.')
_CONTROL = flags.DEFINE_bool('control', True, 'With --push: also FedSign '
                             'at γ = 0 (the float-noise floor).')
_SEED_REF = flags.DEFINE_bool(
    'seed_reference', True, 'With --push: also d between FedAvg with the '
    'seed + 1 (other shuffling and augmentation keys) and FedAvg, the '
    'scale of SGD noise.')


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


def _client_arrays(name: str, config):
  """(x [n, ...], y [n], mean, std, augment) of one client of mean size."""
  if name == 'digits':
    ds = data.from_config(config.data)
    n = round(len(ds.y_train) / config.fed.num_clients)
    idx = np.random.default_rng(config.data.seed).permutation(
        len(ds.y_train))[:n]
    return (ds.x_train[idx], ds.y_train[idx], ds.mean, ds.std,
            config.data.augment and ds.augmentable)
  # CIFAR-10's shapes: 50,000 / K samples of uint8 32×32×3, 10 classes;
  # learnable prototypes + noise, scaled to about CIFAR's pixel spread.
  n = round(50_000 / config.fed.num_clients)
  ds = data.load_synthetic((32, 32, 3), 10, n_train=n, n_test=1,
                           seed=config.data.seed)
  x = np.clip(np.round(127.5 + 40.0 * ds.x_train), 0, 255).astype(np.uint8)
  mean, std = data.TFDS['cifar10'].stats
  return x, ds.y_train, mean, std, bool(config.data.augment)


def _one_round(config, model, variables, arrays, alg):
  """θ after one client's round 0 (client 0, the config's seed)."""
  x, y, mean, std, augment = arrays
  f = config.fed
  cdata = fed.ClientData.from_arrays(x[None], y[None], np.array([len(y)]))
  server, clients = fed.init_states(alg, model, variables, 1,
                                    input_shape=x.shape[1:],
                                    key=jax.random.key(1))
  round_fn = fed.make_round(
      model, alg, cdata, optim=config.optim, fraction=1.0,
      local_epochs=f.local_epochs, batch_size=f.batch_size, seed=config.seed,
      mean=mean, std=std, augment=augment, chunk=1)
  server, _, m = round_fn(server, clients, 0)
  return jax.device_get(server.weights.params), jax.device_get(m)


def _flat(params) -> dict[tuple[str, ...], np.ndarray]:
  return {k: np.asarray(v, np.float64) for k, v in
          flax.traverse_util.flatten_dict(params).items()}


def _g(v: float) -> float:
  """Four significant digits."""
  return float(f'{v:.4g}')


def _cat(tree: dict[tuple[str, ...], np.ndarray]) -> np.ndarray:
  return np.concatenate([tree[k].ravel() for k in sorted(tree)])


def _tensor_medians(theta, avg, sign) -> dict[str, float | int | None]:
  """Medians over tensors (θt ≠ 0) of the per-tensor ratios to mean |θt|:
  over all, kernels (ndim ≥ 2) and 1-D ones (BN scales, 1 in θ0)."""
  out = {}
  for group, keep in (('tensor', lambda a: True),
                      ('kernel', lambda a: a.ndim >= 2),
                      ('scale', lambda a: a.ndim == 1)):
    rel_push, rel_d = [], []
    for k in sorted(theta):
      a = np.mean(np.abs(theta[k]))
      if a > 0 and keep(theta[k]):
        dk = sign[k] - avg[k]
        rel_push.append(np.mean(np.sign(theta[k]) * dk) / a)
        rel_d.append(np.mean(np.abs(dk)) / a)
    out.update({
        f'{group}_median_push_rel_theta':
            _g(np.median(rel_push)) if rel_push else None,
        f'{group}_median_abs_d_rel_theta':
            _g(np.median(rel_d)) if rel_d else None,
        f'{group}s_counted': len(rel_push)})
  return out


def _push_stats(theta, avg, sign) -> dict[str, float]:
  """Statistics of d = θ_FedSign − θ_FedAvg against θt (flat dicts)."""
  t, a, d = _cat(theta), _cat(avg), _cat(sign) - _cat(avg)
  along = float(np.mean(np.sign(t) * d))
  abs_d, abs_t = float(np.mean(np.abs(d))), float(np.mean(np.abs(t)))
  ce = float(np.mean(np.abs(a - t)))
  g = _g
  out = {'push_along_sign': g(along), 'mean_abs_d': g(abs_d),
         'mean_abs_theta_t': g(abs_t), 'push_rel_theta': g(along / abs_t),
         'abs_d_rel_theta': g(abs_d / abs_t)}
  return {**out, **_tensor_medians(theta, avg, sign),
          'ce_step': g(ce), 'push_over_ce_step': g(along / ce)}


def _measure_push(name: str) -> None:
  """The JSON lines of --push for one config (see the module doc)."""
  config = (defaults.fed_offline('digits') if name == 'digits' else
            defaults.fed_config('resnet20', 'cifar10'))
  if _EPOCHS.value:
    config.fed.local_epochs = _EPOCHS.value
  arrays = _client_arrays(name, config)
  model = models.build_model(config.model.name, 10, width=config.model.width,
                             bn=config.model.bn, bn_init=config.model.bn_init,
                             **config.model.get('kwargs', {}))
  variables = steps.init_variables(
      model, jax.random.fold_in(jax.random.key(config.seed), 0),
      arrays[0].shape[1:])
  leaves = jax.tree.leaves(variables['params'])
  n_tensors = len(leaves)
  theta = _flat(variables['params'])
  t0 = time.time()
  avg, m_avg = _one_round(config, model, variables, arrays,
                          fed.build_algorithm('fedavg'))
  avg = _flat(avg)
  f = config.fed
  n = len(arrays[1])
  n_steps = f.local_epochs * math.ceil(n / f.batch_size)
  beta = config.optim.momentum or 0.0
  per_step = config.optim.lr * 0.25 / (1 - beta) * n_steps
  base = {
      'bench': 'fedsign_push',
      'config': f'configs/fed_{name}.py', 'model': config.model.name,
      'data': ('digits' if name == 'digits' else
               'synthetic uint8 32x32x3, 10 classes'),
      'client_samples': n, 'local_epochs': f.local_epochs,
      'batch_size': f.batch_size, 'steps': n_steps, 'lr': config.optim.lr,
      'momentum': beta, 'weight_decay': config.optim.weight_decay,
      'augment': bool(arrays[4]), 'tensors': n_tensors,
      'elements': int(sum(x.size for x in leaves)),
      'theta_t': 'theta_0 (the config seed\'s init)',
      'sign_consistency_fedavg': round(float(m_avg['sign_consistency']), 5),
      'fedavg_seconds': round(time.time() - t0, 1)}
  settings = [('tensor_mean', 0.0)] * _CONTROL.value + [
      (r, float(g)) for r in _REDUCTIONS.value for g in _PUSH_GAMMAS.value]
  for reduction, gamma in settings:
    t0 = time.time()
    alg = fed.build_algorithm('fedsign', {'gamma': gamma,
                                          'reduction': reduction})
    sign, m = _one_round(config, model, variables, arrays, alg)
    c = 1.0 if reduction == 'sum' else 1 / n_tensors
    _emit({**base, 'compared': 'fedsign(gamma) - fedavg, same keys',
           'reduction': reduction, 'gamma': gamma,
           **_push_stats(theta, avg, _flat(sign)),
           'bound_push_per_round': float(f'{gamma * c * per_step:.3g}'),
           'sign_consistency_fedsign': round(float(m['sign_consistency']), 5),
           'seconds': round(time.time() - t0, 1), 'device': _device(),
           'date': time.strftime('%Y-%m-%d')})
  if _SEED_REF.value:
    t0 = time.time()
    other = config.copy_and_resolve_references()
    other.seed = config.seed + 1
    ref, _ = _one_round(other, model, variables, arrays,
                        fed.build_algorithm('fedavg'))
    _emit({**base, 'compared': f'fedavg seed {other.seed} - fedavg seed '
                               f'{config.seed}, same theta_t and data',
           'reduction': None, 'gamma': None,
           **_push_stats(theta, avg, _flat(ref)),
           'seconds': round(time.time() - t0, 1), 'device': _device(),
           'date': time.strftime('%Y-%m-%d')})


def main(argv):
  del argv
  if _PUSH.value:
    for name in _PUSH_CONFIGS.value:
      _measure_push(name)
    return
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
