"""SWEEP workload of BENCHMARKS.md: 41 λ points of a sign-consistent, NS
direction; CE loss and error over N synthetic CIFAR-shaped images, with and
without BN recalibration on R images, fp32 and bf16.

Prints one JSON line per measurement: seconds is the best of --repeats runs
after a warm-up, compile_seconds the first call (compile + one run).

  python bench/sweep_bench.py                      # GPU: full sizes
  python bench/sweep_bench.py --cpu_small           # CPU: reduced sizes
  python bench/sweep_bench.py --anchor=../shared/bench/anchors_torch.py
      # also times the PyTorch loop side by side (needs torch)
"""

import importlib.util
import json
import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags
from timing import best as _best
from timing import device as _device

from valley_jax import models, sharding
from valley_jax.core import directions, normalize, sweep

_MODELS = flags.DEFINE_list('models', ['resnet20', 'vgg16'], 'Models.')
_N = flags.DEFINE_integer('n_eval', 10_000, 'Evaluation images.')
_R = flags.DEFINE_integer('n_recal', 2_000, 'Recalibration images.')
_POINTS = flags.DEFINE_integer('points', 41, 'λ points.')
_BATCH = flags.DEFINE_integer('batch', 2_000, 'Eval/recal batch size.')
_CHUNKS = flags.DEFINE_list('chunks', ['1'], 'Points per vmapped chunk.')
_DTYPES = flags.DEFINE_list('dtypes', ['bfloat16', 'float32'], 'dtypes.')
_WIDTH = flags.DEFINE_float('width', 1.0, 'Model width multiplier.')
_REPEATS = flags.DEFINE_integer('repeats', 3, 'Timed runs (best reported).')
_CPU_SMALL = flags.DEFINE_bool(
    'cpu_small', False, 'Reduced sizes for a CPU: N=500, R=200, 11 points, '
    'ResNet20 and VGG16 at width 0.25.')
_ANCHOR = flags.DEFINE_string('anchor', '', 'Path of anchors_torch.py.')

# Forward FLOPs per 32x32 image at full width (BENCHMARKS.md, torch counter).
_FLOPS = {'vgg16': 627.5e6, 'resnet20': 81.6e6}


def _forward_flops(model, variables) -> float:
  """XLA's FLOP count of one image's forward pass."""
  x = jnp.zeros((1, 32, 32, 3))
  fn = jax.jit(lambda v, x: model.apply(v, x, train=False))
  cost = fn.lower(variables, x).compile().cost_analysis()
  cost = cost[0] if isinstance(cost, list) else cost
  return float(cost.get('flops', float('nan')))


def bench_model(name: str, n: int, r: int, points: int, width: float):
  model = models.build_model(name, 10, width=width)
  variables = model.init(jax.random.key(0), jnp.zeros((1, 32, 32, 3)))
  params, stats = variables['params'], variables['batch_stats']
  fpi = (_FLOPS[name] if width == 1.0 else _forward_flops(model, variables))
  rng = np.random.default_rng(0)
  x = rng.normal(size=(n, 32, 32, 3)).astype(np.float32)
  y = rng.integers(0, 10, n).astype(np.int32)
  xr = rng.normal(size=(max(r, 1), 32, 32, 3)).astype(np.float32)
  mesh = sharding.make_mesh(0)
  bs = min(_BATCH.value, n)
  ev = sweep.make_batches(x, y, bs, mesh)
  eps = directions.sign_consistent(
      directions.sample('gaussian', jax.random.key(1), params), params)
  d = normalize.normalize(eps, params, 'ns')
  coeffs = np.linspace(-1, 1, points)[:, None]
  n_params = sum(p.size for p in jax.tree.leaves(params))
  for recal in (0, r):
    rx = (sweep.make_recal_batches(xr, r, min(_BATCH.value, r), mesh)
          if recal else None)
    for dtype in _DTYPES.value:
      for chunk in map(int, _CHUNKS.value):
        fn = sweep.make_sweep(model, recal=bool(recal), chunk=chunk,
                              dtype=getattr(jnp, dtype), mesh=mesh)
        first, best = _best(
            lambda: fn(params, stats, [d], coeffs, ev, rx)['loss'],
            _REPEATS.value)
        work = points * (n + recal) * fpi
        print(json.dumps(dict(
            bench='sweep_jax', model=name, width=width, params=int(n_params),
            device=_device(), devices=jax.device_count(), dtype=dtype,
            eval=n, recal=recal, points=points, chunk=chunk, batch=bs,
            seconds=round(best, 4), compile_seconds=round(first - best, 2),
            fwd_flops_per_image=fpi,
            achieved_tflops=round(work / best / 1e12, 3),
            date=time.strftime('%Y-%m-%d'))), flush=True)


def bench_anchor(path: str, name: str, n: int, r: int, points: int):
  """The PyTorch loop of anchors_torch.py on the same device and sizes."""
  spec = importlib.util.spec_from_file_location('anchors_torch', path)
  mod = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(mod)
  import torch  # pylint: disable=g-import-not-at-top
  m = getattr(mod, {'vgg16': 'vgg16_bn', 'resnet20': 'resnet20'}[name])()
  m = m.to(mod.dev)
  for recal in (0, r):
    for amp in ((False, True) if mod.dev == 'cuda' else (False,)):
      t = mod.timed(lambda: mod.sweep(m, n, recal, points=points,
                                      bs=min(_BATCH.value, n), amp=amp),
                    reps=_REPEATS.value)
      print(json.dumps(dict(
          bench='sweep_torch_loop', model=name, device=mod.dev,
          torch=torch.__version__, bf16=amp, eval=n, recal=recal,
          points=points, seconds=round(t, 4),
          date=time.strftime('%Y-%m-%d'))), flush=True)


def main(argv):
  del argv
  n, r, points, width = _N.value, _R.value, _POINTS.value, _WIDTH.value
  if _CPU_SMALL.value:
    n, r, points, width = 500, 200, 11, 0.25
  for name in _MODELS.value:
    bench_model(name, n, r, points, width)
    if _ANCHOR.value and width == 1.0:
      bench_anchor(_ANCHOR.value, name, n, r, points)


if __name__ == '__main__':
  app.run(main)
