"""FED-ROUND workload of BENCHMARKS.md: one FedAvg round of 10 clients × 5
local epochs × 500 synthetic CIFAR-shaped samples, batch 64, SGD momentum
0.9, LR 0.03, weight decay 5e-4, then the average.

Prints one JSON line per measurement: seconds is the best of --repeats rounds
after a warm-up round, compile_seconds the first round minus the best.

  python bench/fedsim_bench.py                       # GPU: full sizes
  python bench/fedsim_bench.py --epochs=1 --chunks=1,10 --dtypes=float32
      # CPU: one local epoch (80 client-steps per round instead of 400)
  python bench/fedsim_bench.py --anchor=../shared/bench/anchors_torch.py
      # also times anchors_torch.fedavg_round side by side (needs torch)

With --plain (default) it also times the round's client-steps as separate
calls of a jitted `steps.make_train_step` on one batch: the speed the
engine's steps should match.
"""

import importlib.util
import json
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import app, flags
from timing import best as _best
from timing import device as _device

from valley_jax import fed, models, sharding
from valley_jax.core import steps

_MODELS = flags.DEFINE_list('models', ['resnet20'], 'resnet20 and/or vgg16.')
_CLIENTS = flags.DEFINE_integer('clients', 10, 'Clients per round.')
_EPOCHS = flags.DEFINE_integer('epochs', 5, 'Local epochs.')
_N = flags.DEFINE_integer('n', 500, 'Samples per client.')
_BATCH = flags.DEFINE_integer('batch', 64, 'Local batch size.')
_CHUNKS = flags.DEFINE_list('chunks', ['1', '10'],
                            'Clients side by side (lax.map batch size).')
_DTYPES = flags.DEFINE_list('dtypes', ['bfloat16', 'float32'], 'dtypes.')
_WIDTH = flags.DEFINE_float('width', 1.0, 'Model width multiplier.')
_REPEATS = flags.DEFINE_integer('repeats', 3, 'Timed rounds (best reported).')
_ANCHOR = flags.DEFINE_string('anchor', '', 'Path of anchors_torch.py.')
_PLAIN = flags.DEFINE_bool(
    'plain', True, 'Also time the same client-steps as plain jitted '
    'steps.make_train_step calls (the floor the engine should reach).')


def bench_model(name: str):
  k, n = _CLIENTS.value, _N.value
  model = models.build_model(name, 10, width=_WIDTH.value)
  variables = steps.init_variables(model, jax.random.key(0), (32, 32, 3))
  rng = np.random.default_rng(0)
  x = rng.normal(size=(k, n, 32, 32, 3)).astype(np.float32)
  y = rng.integers(0, 10, (k, n)).astype(np.int32)
  mesh = sharding.make_mesh(1)
  data = fed.ClientData.from_arrays(x, y, np.full(k, n), mesh=mesh)
  alg = fed.build_algorithm('fedavg')
  n_params = sum(p.size for p in jax.tree.leaves(variables['params']))
  for dtype in _DTYPES.value:
    for chunk in map(int, _CHUNKS.value):
      server, clients = fed.init_states(alg, model, variables, k,
                                        input_shape=(32, 32, 3),
                                        key=jax.random.key(1), mesh=mesh)
      round_fn = fed.make_round(
          model, alg, data, optim=fed.SGD(), fraction=1.0,
          local_epochs=_EPOCHS.value, batch_size=_BATCH.value, seed=0,
          chunk=chunk, mesh=mesh, dtype=getattr(jnp, dtype))
      state = [server, clients, 0]

      def one_round():
        s, c, _ = round_fn(state[0], state[1], state[2])
        state[:] = [s, c, state[2] + 1]
        return s.weights.params

      first, best = _best(one_round, _REPEATS.value)
      print(json.dumps(dict(
          bench='fed_round_jax', model=name, width=_WIDTH.value,
          params=int(n_params), device=_device(), dtype=dtype, clients=k,
          epochs=_EPOCHS.value, samples=n, batch=_BATCH.value, chunk=chunk,
          client_steps=k * _EPOCHS.value * -(-n // _BATCH.value),
          seconds=round(best, 4), compile_seconds=round(first - best, 2),
          date=time.strftime('%Y-%m-%d'))), flush=True)


def bench_plain(name: str):
  """The round's client-steps as separate jitted train-step calls."""
  model = models.build_model(name, 10, width=_WIDTH.value)
  variables = steps.init_variables(model, jax.random.key(0), (32, 32, 3))
  tx = optax.sgd(0.03, momentum=0.9)
  step = jax.jit(steps.make_train_step(model, tx, (0.0,), (1.0,), False))
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.normal(size=(_BATCH.value, 32, 32, 3)), jnp.float32)
  y = jnp.asarray(rng.integers(0, 10, _BATCH.value), jnp.int32)
  n_steps = _CLIENTS.value * _EPOCHS.value * -(-_N.value // _BATCH.value)
  state = [steps.init_state(variables, tx)]

  def run():
    for _ in range(n_steps):
      state[0], _ = step(state[0], x, y, jax.random.key(0))
    return state[0].params

  first, best = _best(run, _REPEATS.value)
  print(json.dumps(dict(
      bench='fed_round_plain_steps', model=name, width=_WIDTH.value,
      device=_device(), dtype='float32', batch=_BATCH.value,
      client_steps=n_steps, seconds=round(best, 4),
      seconds_per_step=round(best / n_steps, 4),
      compile_seconds=round(first - best, 2),
      date=time.strftime('%Y-%m-%d'))), flush=True)


def bench_anchor(path: str, name: str):
  """anchors_torch.fedavg_round on the same device and sizes."""
  spec = importlib.util.spec_from_file_location('anchors_torch', path)
  mod = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(mod)
  import torch  # pylint: disable=g-import-not-at-top
  make = getattr(mod, {'vgg16': 'vgg16_bn', 'resnet20': 'resnet20'}[name])
  t = mod.timed(lambda: mod.fedavg_round(
      make, clients=_CLIENTS.value, epochs=_EPOCHS.value, n=_N.value,
      bs=_BATCH.value), reps=_REPEATS.value)
  print(json.dumps(dict(
      bench='fed_round_torch_loop', model=name, device=mod.dev,
      torch=torch.__version__, threads=torch.get_num_threads(),
      clients=_CLIENTS.value, epochs=_EPOCHS.value, samples=_N.value,
      batch=_BATCH.value, seconds=round(t, 4),
      date=time.strftime('%Y-%m-%d'))), flush=True)


def main(argv):
  del argv
  for name in _MODELS.value:
    bench_model(name)
    if _PLAIN.value:
      bench_plain(name)
    if _ANCHOR.value and _WIDTH.value == 1.0:
      bench_anchor(_ANCHOR.value, name)


if __name__ == '__main__':
  app.run(main)
