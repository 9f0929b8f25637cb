"""The sweep engine: loss and error at θ + Σ_k c_k d_k for many points at once.

One compiled function per model and shape evaluates a [P, K] array of
coefficients: 1D lines (K = 1, c = λ·s), 2D grids (K = 2) and two-model
interpolation (base θA, direction θB − θA). Points are batched with
`jax.lax.map(..., batch_size=chunk)`: `chunk` perturbed copies live in memory
at once (chunk = 1 is a sequential scan, chunk = P a full vmap). The data are
sharded over the mesh's 'data' axis, so the same code runs on one CPU, one GPU
or a TPU slice.

BatchNorm recalibration (paper Appendix A.3): for every point, the running
statistics are recomputed in train mode on the recalibration batches and the
point is then evaluated in eval mode. The recomputed statistics are exact
statistics of the whole recalibration set: mean = average of batch means,
var = average of batch E[x²] minus mean² (biased), where every BN layer sees
its input normalised with batch statistics, as in a PyTorch "forward again"
pass.

BatchNorm folding (`make_sweep(fold=True)`; the probe's config.sweep.fold_bn):
at every evaluation point (after its recalibration, if any), each BN layer in
eval mode that directly follows a Conv or Dense layer is folded into it: the
kernel's output channels (and the bias, if any) are multiplied by
s = γ/√(σ² + ε) and the BN becomes a bias-add of β − μ·s. The pairs are found
by tracing the model once (`bn_pairs`). The unfolded path is the reference
(tests compare the two at float32/HIGHEST).

Precision (`precision=`): 'highest' traces the sweep under
`jax.default_matmul_precision('highest')`, so float32 matrix products and
convolutions are full float32 on GPUs/TPUs too (XLA's default there is a
TF32-like reduced precision); None keeps XLA's default.

>>> import valley_jax.models as models, numpy as np, jax
>>> m = models.build_model('mlp', 3, hidden=(4,), bn=False)
>>> v = m.init(jax.random.key(0), np.zeros((1, 2)))
>>> ev = make_batches(np.ones((5, 2), np.float32), np.zeros(5, np.int32), 2)
>>> sweep = make_sweep(m)
>>> out = sweep(v['params'], {}, (v['params'],), np.zeros((1, 1)), ev)
>>> out['loss'].shape
(1,)
"""

import contextlib
import dataclasses
import functools
import math
from typing import Any, Sequence

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from valley_jax import sharding
from valley_jax.core import tree
from valley_jax.core.steps import make_eval_step
from valley_jax.data import pipeline
from valley_jax.errors import InputError

PyTree = Any
# Parameter count under which all points of a chunk are vmapped by default.
_AUTO_ELEMENTS = 8_000_000


@flax.struct.dataclass
class Batches:
  """Evaluation data as [S, B, ...] arrays with 0/1 weights for padding."""

  x: jax.Array
  y: jax.Array
  w: jax.Array


@dataclasses.dataclass
class HostBatches:
  """Evaluation data left in host memory, sent `per_call` batches at a time.

  For evaluation sets larger than the device memory: the sweep evaluates
  every point on one group of batches after another and adds up the sums.
  Holds the examples x, y and the [S, B] example indices and 0/1 weights of
  the batches, S padded to a multiple of `per_call` with weightless batches
  so that every group has the same shape (one compilation).
  """

  x: np.ndarray
  y: np.ndarray
  idx: np.ndarray
  w: np.ndarray
  per_call: int
  mesh: Any = None

  def groups(self):
    """(Batches on the device, number of real examples) per group."""
    for s in range(0, len(self.idx), self.per_call):
      part = slice(s, s + self.per_call)
      yield (_place(self.x, self.y, self.idx[part], self.w[part], self.mesh),
             float(self.w[part].sum()))


def _place(x, y, idx, w, mesh) -> Batches:
  """The batches idx [S, B] of (x, y) on the device(s), sharded over mesh."""
  if mesh is not None:
    # Each process reads only the columns of the batches its devices hold.
    return Batches(*sharding.gather(mesh, (x, y), idx, axis=1),
                   sharding.put_sharded(mesh, w, axis=1))
  return Batches(jnp.asarray(x[idx]), jnp.asarray(y[idx]), jnp.asarray(w))


def make_batches(x: np.ndarray, y: np.ndarray, batch_size: int,
                 mesh=None, stream: int = 0) -> Batches | HostBatches:
  """All of (x, y) in padded batches, sharded on the batch axis over `mesh`.

  Args:
    x, y: the evaluation examples and labels (host arrays).
    batch_size: examples per batch (the last batch is padded, weight 0).
    mesh: the mesh whose 'data' axis splits every batch (None: one device).
    stream: 0 puts every batch on the device now (Batches); N > 0 keeps the
      data on the host and sends N batches per call (HostBatches).

  Returns:
    Batches or HostBatches, both accepted by a `make_sweep` function.
  """
  if len(y) == 0:
    raise InputError('The evaluation set is empty.')
  idx, w = pipeline.padded_batches(len(y), min(batch_size, len(y)))
  if mesh is not None:
    sharding.check_divisible(mesh, idx.shape[1], 'eval batch size')
  if stream:
    pad = -len(idx) % stream
    idx = np.concatenate([idx, np.zeros((pad, idx.shape[1]), idx.dtype)])
    w = np.concatenate([w, np.zeros((pad, w.shape[1]), w.dtype)])
    return HostBatches(x, y, idx, w, stream, mesh)
  return _place(x, y, idx, w, mesh)


def make_recal_batches(x: np.ndarray, n: int, batch_size: int,
                       mesh=None) -> jax.Array:
  """The first `n` examples of x as full [S, B, ...] batches (n % B == 0).

  Recalibration averages the batches' moments with equal weights, so every
  batch is full: n must be a multiple of the batch size.

  Args:
    x: the examples BN statistics are recomputed on (usually training
      images, as the paper's Appendix A.3; host array, uint8 or float).
    n: how many of the first examples to use.
    batch_size: examples per batch (min(batch_size, n)).
    mesh: the mesh whose 'data' axis splits each batch (None: one device).

  Returns:
    A [n // B, B, ...] device array, the `recal_x` of a make_sweep function.

  Raises:
    InputError: n outside [1, len(x)] or not a multiple of the batch size.

  >>> import numpy as np
  >>> make_recal_batches(np.zeros((10, 3)), 8, 4).shape
  (2, 4, 3)
  """
  if not 0 < n <= len(x):
    raise InputError(f'recal samples must be in [1, {len(x)}], got {n}.')
  b = min(batch_size, n)
  if n % b:
    raise InputError(f'recal samples {n} must be a multiple of the recal '
                     f'batch size {b} (all batches equally weighted).')
  if mesh is not None:
    return sharding.gather(mesh, x, np.arange(n).reshape(n // b, b), axis=1)
  return jnp.asarray(x[:n].reshape(n // b, b, *x.shape[1:]))


def _cast(t: PyTree, dtype) -> PyTree:
  return jax.tree.map(lambda a: a.astype(dtype), t)


def _bn_calls(calls: dict, path: tuple[str, ...], module: nn.BatchNorm,
              args: tuple, kwargs: dict) -> None:
  """Records one BatchNorm call: its momentum and whether it used batch
  statistics (flax merges the call's use_running_average with the field)."""
  ura = kwargs.get('use_running_average',
                   args[1] if len(args) > 1 else None)
  ura = module.use_running_average if ura is None else ura
  calls.setdefault(path, []).append((float(module.momentum), bool(ura)))


def _momenta(calls: dict, stats: PyTree) -> dict[tuple[str, ...], float]:
  """Each BN layer's momentum, after checking recalibration can invert its
  update: one call per layer, in train mode, with momentum below 1."""
  out = {}
  for path in flax.traverse_util.flatten_dict(stats):
    if path[-1] != 'mean':
      continue
    name = '/'.join(path[:-1])
    seen = calls.get(path[:-1])
    if not seen:
      raise InputError(
          f'batch_stats holds {name!r}, which is not a flax nn.BatchNorm '
          'called in the forward pass: recalibration only knows how '
          'nn.BatchNorm updates its statistics. Pass recal=False, or use '
          'nn.BatchNorm for that layer.')
    if len(seen) > 1:
      raise InputError(
          f'BatchNorm {name!r} is called {len(seen)} times per forward '
          'pass; recalibration needs one call per BatchNorm layer (give '
          'each use its own layer).')
    momentum, frozen = seen[0]
    if frozen:
      raise InputError(
          f'BatchNorm {name!r} uses its running averages under train=True, '
          'so its statistics cannot be recalibrated: make the model pass '
          'use_running_average=not train to it.')
    if not momentum < 1.0:
      raise InputError(f'BatchNorm {name!r} has momentum {momentum}: its '
                       'statistics never change, nothing to recalibrate.')
    out[path[:-1]] = momentum
  return out


def _train_update(model: nn.Module, params: PyTree, zeros: PyTree, x):
  """The BN statistics after one train-mode update from zero, and each
  layer's momentum (read from the modules as they are called)."""
  calls = {}

  def spy(next_fun, args, kwargs, ctx):
    if ctx.method_name == '__call__' and isinstance(ctx.module,
                                                    nn.BatchNorm):
      _bn_calls(calls, tuple(ctx.module.scope.path), ctx.module, args, kwargs)
    return next_fun(*args, **kwargs)

  with nn.intercept_methods(spy):
    _, upd = model.apply({'params': params, 'batch_stats': zeros}, x,
                         train=True, mutable=['batch_stats'])
  return upd['batch_stats'], _momenta(calls, upd['batch_stats'])


def _moments(stats: PyTree, momenta: dict) -> tuple[PyTree, PyTree]:
  """Per-batch (E[x], E[x²]) from BN running stats updated from zero.

  A BatchNorm with momentum m updates its running mean from zero to
  (1 − m)·E[x] and its running variance to (1 − m)·Var[x]; dividing by
  (1 − m), with m read from each layer, gives the batch's moments exactly
  for any momentum.
  """
  flat = flax.traverse_util.flatten_dict(stats)
  m1, m2 = {}, {}
  for path, v in flat.items():
    if path[-1] == 'mean':
      scale = 1.0 / (1.0 - momenta[path[:-1]])
      mean = v.astype(jnp.float32) * scale
      var = flat[path[:-1] + ('var',)].astype(jnp.float32) * scale
      m1[path[:-1]], m2[path[:-1]] = mean, var + jnp.square(mean)
  return m1, m2


def _stats(m1: dict, m2: dict) -> PyTree:
  flat = {}
  for path in m1:
    flat[path + ('mean',)] = m1[path]
    flat[path + ('var',)] = jnp.maximum(m2[path] - jnp.square(m1[path]), 0.0)
  return flax.traverse_util.unflatten_dict(flat)


def recalibrate(model: nn.Module, params: PyTree, batch_stats: PyTree,
                x_SB: jax.Array, mean=(0.0,), std=(1.0,),
                dtype=jnp.float32) -> PyTree:
  """BN running statistics recomputed on the batches x_SB.

  The statistics are exact moments of the whole recalibration set (see the
  module doc), whatever each BatchNorm's momentum: every batch's moments are
  recovered from a train-mode update started at zero, using the momentum
  read from the layer. A model without BatchNorm gets its (empty)
  batch_stats back.

  Args:
    model: a flax module whose __call__ takes `train=` and whose BatchNorm
      layers are flax `nn.BatchNorm` with `use_running_average=not train`,
      each called once per forward pass.
    params: the parameters of the point.
    batch_stats: the model's batch_stats (only their structure is used).
    x_SB: [S, B, ...] recalibration batches (make_recal_batches).
    mean, std: input normalisation of uint8 images (ignored for floats).
    dtype: compute dtype of the forward passes.

  Returns:
    batch_stats with 'mean' and biased 'var' of every BN layer's input.

  Raises:
    InputError: a batch_stats entry that is not an nn.BatchNorm called once
      in train mode with momentum < 1 (the message names the layer).

  >>> import flax.linen as nn, numpy as np, jax
  >>> class Net(nn.Module):
  ...   @nn.compact
  ...   def __call__(self, x, train):
  ...     return nn.BatchNorm(use_running_average=not train)(x)  # m = 0.99
  >>> x = np.array([[1.0], [3.0], [5.0], [7.0]], np.float32)
  >>> v = Net().init(jax.random.key(0), x, train=False)
  >>> s = recalibrate(Net(), v['params'], v['batch_stats'], x.reshape(2, 2, 1))
  >>> float(s['BatchNorm_0']['mean'][0]), float(s['BatchNorm_0']['var'][0])
  (4.0, 5.0)
  """
  if not jax.tree.leaves(batch_stats):
    return batch_stats
  zeros = jax.tree.map(jnp.zeros_like, batch_stats)

  def batch(carry, x):
    x = pipeline.normalize(x, mean, std).astype(dtype)
    upd, momenta = _train_update(model, params, zeros, x)
    return jax.tree.map(jnp.add, carry, _moments(upd, momenta)), None

  m0 = {p[:-1]: jnp.zeros(v.shape, jnp.float32) for p, v in
        flax.traverse_util.flatten_dict(zeros).items() if p[-1] == 'mean'}
  init = (m0, m0)  # Running sums of E[x] and E[x²] per BN layer.
  (s1, s2), _ = jax.lax.scan(batch, init, x_SB)
  n = x_SB.shape[0]
  return _stats(*jax.tree.map(lambda a: a / n, (s1, s2)))


def evaluate(model: nn.Module, params: PyTree, batch_stats: PyTree,
             data: Batches, mean=(0.0,), std=(1.0,),
             dtype=jnp.float32) -> tuple[jax.Array, jax.Array]:
  """Mean CE loss and error (1 − accuracy) of one parameter point.

  Args:
    model: the flax module (called with train=False).
    params, batch_stats: the point and the BN statistics it is evaluated
      with ({} for a model without BN).
    data: evaluation Batches (make_batches); padding has weight 0.
    mean, std: input normalisation of uint8 images (ignored for floats).
    dtype: compute dtype of the forward pass.

  Returns:
    (loss, error) as float32 scalars: sums over the batches divided by the
    number of real examples.
  """
  step = make_eval_step(model, mean, std, dtype)

  def batch(carry, b):
    return jax.tree.map(jnp.add, carry, step(params, batch_stats, *b)), None

  zero = jnp.zeros((), jnp.float32)
  tot, _ = jax.lax.scan(batch, {'loss': zero, 'correct': zero, 'count': zero},
                        (data.x, data.y, data.w))
  return tot['loss'] / tot['count'], 1.0 - tot['correct'] / tot['count']


# BN path -> (path of the Conv/Dense it follows, the BN's epsilon).
BnPairs = dict[tuple[str, ...], tuple[tuple[str, ...], float]]


def bn_pairs(model: nn.Module, variables: PyTree,
             input_shape: Sequence[int]) -> BnPairs:
  """The BN layers (eval mode) whose input is a Conv or Dense output.

  Traced abstractly (no FLOPs): a BN is paired with the Conv/Dense whose
  output array it receives; a layer output that feeds two BNs pairs neither.

  Args:
    model: the flax module.
    variables: {'params', 'batch_stats'} (arrays or shapes).
    input_shape: the shape of one input example (no batch axis).

  Returns:
    BN module path -> (Conv/Dense module path, BN epsilon).
  """
  outs, pairs, seen = {}, {}, {}

  def spy(next_fun, args, kwargs, ctx):
    out = next_fun(*args, **kwargs)
    m = ctx.module
    if ctx.method_name != '__call__':
      return out
    if isinstance(m, (nn.Conv, nn.Dense)):
      outs[id(out)] = (m.scope.path, out)  # Keeps `out` alive: ids stay.
    elif (isinstance(m, nn.BatchNorm) and m.use_running_average
          and m.axis == -1 and id(args[0]) in outs):
      lin = outs[id(args[0])][0]
      seen[lin] = seen.get(lin, 0) + 1
      pairs[tuple(m.scope.path)] = (tuple(lin), float(m.epsilon))
    return out

  x = jax.ShapeDtypeStruct((1, *input_shape), jnp.float32)
  with nn.intercept_methods(spy):
    jax.eval_shape(lambda v, x: model.apply(v, x, train=False), variables, x)
  return {bn: v for bn, v in pairs.items() if seen[v[0]] == 1}


def fold_bn(params: PyTree, batch_stats: PyTree,
            pairs: BnPairs) -> tuple[PyTree, dict]:
  """Folds each paired BN into its layer (see module doc).

  Args:
    params: the parameters (float32).
    batch_stats: the BN running statistics used for evaluation.
    pairs: from bn_pairs.

  Returns:
    (params with scaled kernels and biases, BN path -> shift β − μ·s).
  """
  fp = flax.traverse_util.flatten_dict(flax.core.unfreeze(params))
  fs = flax.traverse_util.flatten_dict(flax.core.unfreeze(batch_stats))
  shifts = {}
  for bn, (lin, eps) in pairs.items():
    mean, var = fs[bn + ('mean',)], fs[bn + ('var',)]
    s = fp.get(bn + ('scale',), 1.0) * jax.lax.rsqrt(var + eps)
    fp[lin + ('kernel',)] = fp[lin + ('kernel',)] * s
    if lin + ('bias',) in fp:
      fp[lin + ('bias',)] = fp[lin + ('bias',)] * s
    shifts[bn] = fp.get(bn + ('bias',), 0.0) - mean * s
  return flax.traverse_util.unflatten_dict(fp), shifts


def folded(shifts: dict):
  """A context in which the folded BNs of `shifts` are bias-adds.

  Args:
    shifts: BN module path -> β − μ·s, from fold_bn.

  Returns:
    A flax intercept_methods context; apply the folded parameters in it.
  """

  def intercept(next_fun, args, kwargs, ctx):
    path = tuple(ctx.module.scope.path)
    if (ctx.method_name == '__call__'
        and isinstance(ctx.module, nn.BatchNorm) and path in shifts):
      x = args[0]
      return x + shifts[path].astype(x.dtype)
    return next_fun(*args, **kwargs)

  return nn.intercept_methods(intercept)


def matmul_precision(precision: str | None):
  """jax.default_matmul_precision(precision); None: XLA's default."""
  if precision is None:
    return contextlib.nullcontext()
  return jax.default_matmul_precision(precision)


def auto_chunk(params: PyTree, num_points: int) -> int:
  """Points per vmapped chunk, from measurements.

  Vmapping points turns convolutions into grouped convolutions with one
  weight set per point: on 2 CPU cores an 11-point ResNet20 (x0.25) sweep took
  2.1 s one point at a time and 13.0 s fully vmapped, VGG16-BN (x0.25) 4.5 s
  and 18.0 s (bench/results/sweep_cpu_2cores_2026-11-22.jsonl), and on an H100
  vmapping 8 points of VGG16 was slower than one at a time (DESIGN.md). Networks
  with convolutions therefore go one point at a time; dense-only networks
  (batched matmuls) vmap as many points as fit in ~8M perturbed elements.
  Override with config.sweep.chunk.
  """
  leaves = jax.tree.leaves(params)
  if any(p.ndim >= 4 for p in leaves):
    return 1
  n = sum(int(np.prod(p.shape)) for p in leaves)
  return int(max(1, min(num_points, _AUTO_ELEMENTS // max(n, 1))))


def check_directions(params: PyTree, directions) -> tuple[PyTree, ...]:
  """The directions as a tuple, after checking each matches the parameters.

  Args:
    params: the parameter tree the directions perturb.
    directions: a list or tuple of trees with the parameters' structure and
      shapes (one per coefficient column).

  Returns:
    tuple(directions).

  Raises:
    InputError: a single tree instead of a list, or a direction whose paths
      or shapes differ from the parameters' (the message names the first).
  """
  if not isinstance(directions, (list, tuple)):
    raise InputError(
        'directions must be a list of direction trees, one per coefficient '
        f'column: pass [d] for a single direction (got a '
        f'{type(directions).__name__}).')
  want = _paths_shapes(params)
  for k, d in enumerate(directions):
    got = _paths_shapes(d)
    if got == want and jax.tree.structure(d) == jax.tree.structure(params):
      continue
    missing = sorted(set(want) - set(got))
    extra = sorted(set(got) - set(want))
    bad = [p for p in want if p in got and got[p] != want[p]]
    what = (f'lacks {missing[0]}' if missing else
            f'has {extra[0]}, which the parameters lack' if extra else
            f'has shape {got[bad[0]]} at {bad[0]}, the parameters '
            f'{want[bad[0]]}' if bad else
            'has other container types (a FrozenDict against a dict?): '
            'pass both through flax.core.unfreeze')
    raise InputError(f'direction {k} does not match the parameters: it '
                     f'{what}. Build directions from these parameters '
                     '(e.g. directions.sample(params, ...)).')
  return tuple(directions)


def _paths_shapes(t: PyTree) -> dict[str, tuple[int, ...]]:
  leaves = jax.tree_util.tree_flatten_with_path(t)[0]
  return {jax.tree_util.keystr(k): tuple(np.shape(v)) for k, v in leaves}


def check_model(model: nn.Module, variables: PyTree,
                input_shape: Sequence[int]) -> None:
  """Refuses a model the sweep cannot call (traced abstractly, no FLOPs).

  The contract: `model.apply({'params': p, 'batch_stats': s}, x,
  train=False)` gives [B, classes] logits, and with train=True and
  mutable=['batch_stats'] updates the BN statistics.

  Raises:
    InputError: the model's __call__ takes no `train` argument.
  """
  x = jax.ShapeDtypeStruct((1, *input_shape), jnp.float32)
  try:
    jax.eval_shape(lambda v, x: model.apply(v, x, train=False), variables, x)
  except TypeError as e:
    if 'train' not in str(e):
      raise
    raise InputError(
        f'{type(model).__name__}.__call__ must take a `train` argument '
        '(the sweep calls model.apply(variables, x, train=False), and '
        'train=True to recalibrate BatchNorm): add `train: bool = False` '
        f'and pass use_running_average=not train to BatchNorm ({e}).'
    ) from None


def make_sweep(model: nn.Module, mean=(0.0,), std=(1.0,), *,
               recal: bool = False, chunk: int | None = None,
               dtype=jnp.float32, mesh=None, precision: str | None = None,
               fold: bool = False):
  """A jitted fn(params, batch_stats, directions, coeffs_PxK, eval, recal_x).

  The model contract (checked on the first call, abstractly): `model.apply(
  {'params': p, 'batch_stats': s}, x, train=False)` returns [B, classes]
  logits; its BatchNorm layers are flax `nn.BatchNorm(use_running_average=
  not train)`, any momentum, each called once per forward pass (needed only
  with recal=True); a model without BN passes batch_stats={}. Only `params`
  are perturbed.

  The returned fn(params, batch_stats, directions, coeffs_PxK, eval,
  recal_x=None) evaluates θ + Σ_k c_pk·d_k for every row p of coeffs_PxK:
  directions is a list of K trees like params (pass [d] for one),
  coeffs_PxK a [P, K] array (linspace_coeffs, grid_coeffs), eval the
  Batches or HostBatches of make_batches, recal_x the batches of
  make_recal_batches (with recal=True). It compiles once per shape; new
  parameters, directions or coefficients of the same shapes reuse it.

  Args:
    model: a flax module called as model.apply(vars, x, train=...).
    mean, std: input normalisation of uint8 images (ignored for floats).
    recal: recompute BN statistics per point on recal_x.
    chunk: points per vmapped chunk (None: auto_chunk).
    dtype: compute dtype (jnp.bfloat16 for mixed precision; the loss is
      always accumulated in float32).
    mesh: the mesh the data are sharded over; parameters, directions and
      coefficients are replicated on it (None: leave them where they are).
    precision: None (XLA's default) or a jax.default_matmul_precision value
      such as 'highest' (full float32 products on GPU/TPU).
    fold: fold BatchNorm into the preceding Conv/Dense for evaluation (see
      module doc); a model without such a pair is evaluated as it is.
  Returns:
    fn returning {'loss': [P], 'error': [P]}: device arrays for `eval` data
    on the device (Batches), float64 numpy arrays for streamed data
    (HostBatches): then every point is recalibrated once (its statistics
    kept, [P] × the BN statistics), and evaluated on one group of batches
    after another.
  """
  pairs: list[BnPairs] = []  # Found on the first call (needs a shape).
  checked: list[bool] = []  # The model contract, checked on the first call.

  def recalibrated(params, batch_stats, directions, c_K, recal_x):
    p = tree.combine(params, list(directions), c_K)
    return recalibrate(model, _cast(p, dtype), batch_stats, recal_x, mean,
                       std, dtype)

  @functools.partial(jax.jit, static_argnames=('chunk_size',))
  def recal_points(params, batch_stats, directions, coeffs_PxK, recal_x,
                   chunk_size):
    """The recalibrated statistics of every point (for streamed data)."""
    return jax.lax.map(
        lambda c: recalibrated(params, batch_stats, directions, c, recal_x),
        coeffs_PxK, batch_size=chunk_size)

  @functools.partial(jax.jit, static_argnames=('chunk_size',))
  def run(params, batch_stats, directions, coeffs_PxK, data, recal_x,
          stats_P, chunk_size):
    def point(args):
      c_K, given = args
      p = tree.combine(params, list(directions), c_K)
      stats = batch_stats
      if given is not None:  # Recalibrated before (streamed data).
        stats = given
      elif recal:
        stats = recalibrated(params, batch_stats, directions, c_K, recal_x)
      ctx = contextlib.nullcontext()
      if pairs and pairs[0]:
        p, shifts = fold_bn(p, stats, pairs[0])
        ctx = folded(shifts)
      with ctx:
        return evaluate(model, _cast(p, dtype), _cast(stats, dtype), data,
                        mean, std, dtype)

    loss, err = jax.lax.map(point, (coeffs_PxK, stats_P),
                            batch_size=chunk_size)
    return {'loss': loss, 'error': err}

  def streamed(args, data: HostBatches, recal_x, size):
    """Group by group of batches; the means weighted by real examples."""
    stats_P = recal_points(*args, recal_x, size) if recal else None
    total, count = None, 0.0
    for part, n in data.groups():
      out = run(*args, part, None, stats_P, size)
      out = {k: np.asarray(v, np.float64) * n for k, v in out.items()}
      total = out if total is None else {k: total[k] + out[k] for k in out}
      count += n
    return {k: v / count for k, v in total.items()}

  def sweep(params, batch_stats, directions: Sequence[PyTree], coeffs_PxK,
            data: Batches, recal_x=None):
    directions = check_directions(params, directions)
    coeffs_PxK = jnp.asarray(coeffs_PxK, jnp.float32)
    if coeffs_PxK.ndim != 2 or coeffs_PxK.shape[1] != len(directions):
      raise InputError(f'coeffs must be [points, {len(directions)}], got '
                       f'{coeffs_PxK.shape}.')
    if recal and recal_x is None:
      raise InputError('recal=True needs recalibration batches (recal_x).')
    shape = data.x.shape[1 if isinstance(data, HostBatches) else 2:]
    if not checked:
      check_model(model, {'params': params, 'batch_stats': batch_stats},
                  shape)
      checked.append(True)
    size = chunk or auto_chunk(params, coeffs_PxK.shape[0])
    args = (params, batch_stats, directions, coeffs_PxK)
    if mesh is not None:
      args = sharding.put_replicated(mesh, args)
    else:
      # Place everything as the parameters are: the same arrays with another
      # sharding object (a one-device NamedSharding or SingleDeviceSharding,
      # depending on which jit made them) would trace the sweep again.
      where = getattr(jax.tree.leaves(params)[0], 'sharding', None)
      if where is not None:
        args = jax.device_put(args, where)
    if fold and not pairs:
      pairs.append(bn_pairs(model, {'params': params,
                                    'batch_stats': batch_stats}, shape))
    size = min(size, coeffs_PxK.shape[0])
    with matmul_precision(precision):
      if isinstance(data, HostBatches):
        return streamed(args, data, recal_x, size)
      return run(*args, data, recal_x, None, size)

  return sweep


def sweep_reference(model, params, batch_stats, directions, coeffs_PxK,
                    x, y, batch_size, recal_x=None, recal_batch_size=None,
                    mean=(0.0,), std=(1.0,)) -> dict[str, np.ndarray]:
  """The plain path: one point at a time, Python loops, float64 sums.

  Used by tests as the reference of the fast path; also handy for debugging.
  """
  fwd = jax.jit(lambda v, x: model.apply(v, x, train=False))
  losses, errors = [], []
  for c in np.asarray(coeffs_PxK):
    p = jax.tree.map(lambda t, *ds: t + sum(ci * d for ci, d in zip(c, ds)),
                     params, *directions)
    stats = batch_stats
    if recal_x is not None:
      stats = _reference_recal(model, p, batch_stats, recal_x,
                               recal_batch_size, mean, std)
    loss, wrong = 0.0, 0
    for i in range(0, len(y), batch_size):
      xb = pipeline.normalize(jnp.asarray(x[i:i + batch_size]), mean, std)
      logits = np.asarray(fwd({'params': p, 'batch_stats': stats}, xb),
                          np.float64)
      yb = y[i:i + batch_size]
      logz = np.log(np.sum(np.exp(logits - logits.max(1, keepdims=True)), 1))
      loss += np.sum(logz + logits.max(1) - logits[np.arange(len(yb)), yb])
      wrong += int(np.sum(logits.argmax(1) != yb))
    losses.append(loss / len(y))
    errors.append(wrong / len(y))
  return {'loss': np.array(losses), 'error': np.array(errors)}


def _reference_recal(model, p, batch_stats, recal_x, bs, mean, std):
  """Exact BN statistics, independent of how BN updates its running stats.

  Every BatchNorm layer's input in the train-mode forward pass is captured
  (eagerly, as numpy float64) and its moments are averaged over the batches.
  """
  if not jax.tree.leaves(batch_stats):
    return batch_stats
  zeros = jax.tree.map(jnp.zeros_like, batch_stats)
  sums, n = {}, 0
  for i in range(0, len(recal_x), bs):
    xb = pipeline.normalize(jnp.asarray(recal_x[i:i + bs]), mean, std)
    for path, moments in _bn_inputs(model, p, zeros, xb).items():
      old = sums.get(path, (0.0, 0.0))
      sums[path] = (old[0] + moments[0], old[1] + moments[1])
    n += 1
  flat = {}
  for path, (s1, s2) in sums.items():
    flat[path + ('mean',)] = jnp.asarray(s1 / n, jnp.float32)
    flat[path + ('var',)] = jnp.asarray(s2 / n - (s1 / n) ** 2, jnp.float32)
  return flax.traverse_util.unflatten_dict(flat)


def _bn_inputs(model, params, zeros, x) -> dict:
  """BN path -> (E[x], E[x²]) of its input over the non-feature axes."""
  seen = {}

  def spy(next_fun, args, kwargs, ctx):
    m = ctx.module
    if ctx.method_name == '__call__' and isinstance(m, nn.BatchNorm):
      a = np.asarray(args[0], np.float64)
      feat = np.atleast_1d(m.axis) % a.ndim
      axes = tuple(i for i in range(a.ndim) if i not in feat)
      seen[tuple(m.scope.path)] = (a.mean(axes), (a * a).mean(axes))
    return next_fun(*args, **kwargs)

  with nn.intercept_methods(spy):
    model.apply({'params': params, 'batch_stats': zeros}, x, train=True,
                mutable=['batch_stats'])
  return seen


def linspace_coeffs(lo: float, hi: float, num: int,
                    scale: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
  """λ values and their [P, 1] coefficients λ·s.

  Args:
    lo, hi: the λ range (lo <= hi, finite).
    num: the number of points (numpy.linspace, both ends included).
    scale: s, the step the paper multiplies λ by.

  Returns:
    (lams [P], coeffs [P, 1] = λ·s): pass coeffs to a make_sweep function
    with one direction.

  >>> lams, c = linspace_coeffs(-1, 1, 3, scale=0.5)
  >>> lams.tolist(), c[:, 0].tolist()
  ([-1.0, 0.0, 1.0], [-0.5, 0.0, 0.5])
  """
  if num < 1 or not math.isfinite(lo) or not math.isfinite(hi) or hi < lo:
    raise InputError(f'Empty or invalid λ range [{lo}, {hi}] with {num} '
                     'points; need lo <= hi and num >= 1.')
  lams = np.linspace(lo, hi, num)
  return lams, (lams * scale)[:, None]


def grid_coeffs(lo: float, hi: float, num: int) -> tuple[np.ndarray,
                                                         np.ndarray]:
  """A num × num grid of (α, β) as [num², 2] coefficients (row-major)."""
  axis, _ = linspace_coeffs(lo, hi, num)
  a, b = np.meshgrid(axis, axis, indexing='ij')
  return axis, np.stack([a.ravel(), b.ravel()], 1)


@dataclasses.dataclass
class Setting:
  """A compiled sweep with its data: what probes reuse across curves."""

  sweep: Any
  eval_data: Batches | HostBatches
  recal_x: jax.Array | None
  mesh: Any = None
  batch_sizes: dict[str, int | None] | None = None  # For results.json.

  def __call__(self, params, batch_stats, directions, coeffs_PxK):
    out = self.sweep(params, batch_stats, directions, coeffs_PxK,
                     self.eval_data, self.recal_x)
    return {k: np.asarray(v, np.float64) for k, v in out.items()}
