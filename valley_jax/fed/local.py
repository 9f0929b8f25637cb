"""A client's local training: shuffling, its own number of steps, a loop.

Each client takes exactly E epochs over its own n_k examples with batch B, in
an order drawn from a key folded from (seed, round, client). Its data sit in
an [M, ...] block padded to the largest client M (of the run, or of a whole
table), but it runs only its own E·⌈n_k/B⌉ steps: the steps are a
`lax.while_loop` whose trip count is the client's own. Clients run side by
side (vmap) loop until the longest of them is done; the others' steps there
are the identity (JAX's batched while_loop selects their old carry), which is
why the engine groups clients of similar size (`rounds.group_order`). Nothing
a client computes depends on M:

  * step t = e·⌈n_k/B⌉ + j of a client holds examples j·B .. j·B+B−1 of its
    epoch-e order, whose positions come from uniform draws folded per row
    index (`epoch_order`), and its augmentation key is folded from t;
  * the last partial batch of an epoch is KEPT, as PyTorch's DataLoader keeps
    it in the reference loop (anchors_torch.fedavg_round): its missing rows
    carry weight 0, the loss is the mean over its real rows only, and BatchNorm
    computes its batch statistics over the real rows only (flax BatchNorm's
    `mask`, injected with `nn.intercept_methods`, so the models need no
    change). A kept partial batch of b rows is therefore the same step as a
    batch of b rows, which the plain reference path checks.

The optimiser is the paper's SGD (momentum, torch-style weight decay added to
the gradient) with a constant learning rate, its state fresh in every round,
as in the reference loop.
"""

import contextlib
import math
from typing import Any, Callable

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from valley_jax.core.steps import OPTIMIZERS, cross_entropy
from valley_jax.data import pipeline
from valley_jax.errors import InputError
from valley_jax.fed import algorithm as alg_lib
from valley_jax.fed.algorithm import Batch, LocalContext, Weights
from valley_jax.models import conv as conv_lib

PyTree = Any
# Salts of the per-client key: one stream orders epochs, one augments steps.
_ORDER, _AUGMENT = 0, 1


def client_optimizer(optim) -> tuple[optax.GradientTransformation, float]:
  """The local optimiser of `steps.make_optimizer` at a constant LR.

  'sgd': L2 weight decay added to the gradient before the momentum, as
  torch.optim.SGD(weight_decay=...); 'adamw': decoupled decay.

  Args:
    optim: an object with name, lr, momentum, weight_decay (config.optim).
  Returns:
    (optax transformation, learning rate).
  """
  if optim.name not in OPTIMIZERS:
    raise InputError(f'Unknown optimizer {optim.name!r}; choose one of '
                     f'{OPTIMIZERS} (config.optim.name).')
  if not optim.lr > 0:
    raise InputError(f'config.optim.lr must be positive, got {optim.lr}.')
  if optim.name == 'adamw':
    return optax.adamw(optim.lr, weight_decay=optim.weight_decay), optim.lr
  tx = optax.chain(optax.add_decayed_weights(optim.weight_decay),
                   optax.sgd(optim.lr, momentum=optim.momentum or None))
  return tx, optim.lr


def _bn_mask_interceptor(mask_B: jax.Array):
  """Passes `mask` (rows of the batch) to every BatchNorm call."""

  def interceptor(next_fun, args, kwargs, context):
    if (isinstance(context.module, nn.BatchNorm) and
        context.method_name == '__call__'):
      x = args[0]
      kwargs = dict(kwargs, mask=mask_B.reshape((-1,) + (1,) * (x.ndim - 1)))
    return next_fun(*args, **kwargs)

  return interceptor


def apply_model(model: nn.Module, params, batch_stats, x, *, train: bool,
                mask_B: jax.Array | None = None, features: bool = False):
  """Forward pass: (logits, batch_stats after it, features or None).

  Args:
    model: a registry model (or any module that sows its features).
    params, batch_stats: its variables.
    x: a batch of inputs.
    train: train mode (batch statistics, updated running averages).
    mask_B: boolean rows whose BN statistics count (train mode only).
    features: also return the penultimate features (the input of `head`).
  """
  mutable = ['batch_stats'] if train and batch_stats else []
  mutable += ['intermediates'] if features else []
  ctx = (nn.intercept_methods(_bn_mask_interceptor(mask_B))
         if train and mask_B is not None else contextlib.nullcontext())
  with ctx:
    out = model.apply({'params': params, 'batch_stats': batch_stats}, x,
                      train=train, mutable=mutable or False)
  logits, state = out if mutable else (out, {})
  if not features:
    return logits, state.get('batch_stats', batch_stats), None
  sown = state.get('intermediates', {}).get('features')
  if sown is None:
    raise InputError(f'{type(model).__name__} exposes no representation (it '
                     'does not sow intermediates/features before its head).')
  return logits, state.get('batch_stats', batch_stats), sown[0]


def feature_dim(model: nn.Module, input_shape: tuple[int, ...],
                algorithm: str = 'moon') -> int:
  """Width d of the model's representation; ValueError if it has none.

  Runs `jax.eval_shape` only: nothing is compiled.
  """
  x = jax.ShapeDtypeStruct((1, *input_shape), jnp.float32)

  def run(key, x):
    v = model.init(key, x, train=False)
    return apply_model(model, v['params'], v.get('batch_stats', {}), x,
                       train=False, features=True)[2]

  try:
    shape = jax.eval_shape(run, jax.random.key(0), x).shape
  except ValueError as e:
    raise InputError(f'{alg_lib.FIELD}.algorithm={algorithm!r} needs the '
                     f'model\'s representation: {e} Use a registry model '
                     '(config.model.name).') from e
  return int(math.prod(shape[1:]))


def sgd(lr, momentum, weight_decay) -> optax.GradientTransformation:
  """The 'sgd' of `client_optimizer` with possibly traced numbers: L2
  weight decay added to the gradient, then momentum (always a trace; with
  momentum 0 it is the plain gradient, as optax.sgd without momentum)."""
  return optax.chain(optax.add_decayed_weights(weight_decay),
                     optax.sgd(lr, momentum=momentum))


def client_key(seed: int, round_index, client) -> jax.Array:
  """The key of one client in one round: folded from (seed, round, client)."""
  key = jax.random.fold_in(jax.random.key(seed), 2)
  return jax.random.fold_in(jax.random.fold_in(key, round_index), client)


def epoch_order(key: jax.Array, count, n_max: int, length: int) -> jax.Array:
  """Positions [length]: a random permutation of range(count), then filler.

  Row i's draw is uniform(fold_in(key, i)), so the order of the `count`
  valid rows does not depend on n_max (the padding a table shares); they
  sort before the padding rows; the filler after n_max is 0. Only the first
  `count` positions are ever used.
  """
  u = jax.vmap(lambda i: jax.random.uniform(jax.random.fold_in(key, i)))(
      jnp.arange(n_max))
  u = jnp.where(jnp.arange(n_max) < count, u, 2.0)
  return jnp.pad(jnp.argsort(u).astype(jnp.int32), (0, length - n_max))


def order_key(key: jax.Array, epoch) -> jax.Array:
  return jax.random.fold_in(jax.random.fold_in(key, _ORDER), epoch)


def augment_key(key: jax.Array, step) -> jax.Array:
  """Augmentation key of the client's step e·⌈n_k/B⌉ + j."""
  return jax.random.fold_in(jax.random.fold_in(key, _AUGMENT), step)


def masked_mean(v: jax.Array, w: jax.Array) -> jax.Array:
  """Σ v·w / Σ w (0 for an all-masked batch)."""
  return jnp.sum(v * w) / jnp.maximum(jnp.sum(w), 1.0)


def _cast(t: PyTree, dtype) -> PyTree:
  return jax.tree.map(lambda a: a.astype(dtype), t)


def make_features_fn(model: nn.Module, dtype=jnp.float32):
  """(weights, x) -> eval-mode penultimate features of those weights."""

  def features_fn(w: Weights, x: jax.Array) -> jax.Array:
    return apply_model(model, _cast(w.params, dtype), w.batch_stats, x,
                       train=False, features=True)[2]

  return features_fn


def make_local_step(model: nn.Module, algorithm: alg_lib.Algorithm,
                    tx: optax.GradientTransformation, mean=(0.0,), std=(1.0,),
                    augment: bool = False,
                    dtype=jnp.float32) -> Callable[..., Any]:
  """One local step: (carry, x, y, w, key, ctx, mask_B) -> (carry, ce).

  carry is (trainable {'params', 'extra'}, batch_stats, opt_state); w the 0/1
  row weights; mask_B None (every row real) or the rows BN may use. The step
  minimises mean_w(CE) + algorithm.local_loss and applies
  algorithm.correct_update to the optimiser's update. Returns the new carry
  and the batch's mean CE.
  """

  def step(carry, x, y, w, key, ctx: LocalContext, mask_B=None):
    trainable, stats, opt_state = carry
    x = pipeline.normalize(x, mean, std)
    if augment:
      x = pipeline.augment(key, x)
    x = x.astype(dtype)
    batch = Batch(x, y, w)

    def loss_fn(tr):
      logits, new_stats, feats = apply_model(
          model, _cast(tr['params'], dtype), stats, x, train=True,
          mask_B=mask_B, features=algorithm.needs_features)
      ce = masked_mean(cross_entropy(logits, y), w)
      reg = (algorithm.local_loss(tr, feats, batch, ctx)
             if algorithm.local_loss else 0.0)
      return ce + reg, (ce, new_stats)

    # Conv gradients in a form XLA:CPU runs fast inside the scan (conv.py).
    with conv_lib.fast_cpu_gradients():
      grads, (ce, new_stats) = jax.grad(loss_fn, has_aux=True)(trainable)
    updates, opt_state = tx.update(grads, opt_state, trainable)
    if algorithm.correct_update:
      updates = algorithm.correct_update(ctx, updates)
    trainable = optax.apply_updates(trainable, updates)
    return (trainable, new_stats, opt_state), ce

  return step


def steps_per_epoch(n_max: int, batch_size: int) -> int:
  """Scan steps per epoch: ⌈M/B⌉ (the last batch may be partial)."""
  return -(-n_max // batch_size)


def make_local_train(step: Callable[..., Any], *, epochs: int,
                     batch_size: int, n_max: int) -> Callable[..., Any]:
  """All of one client's local steps as one `lax.while_loop`.

  Returns fn(start, ctx, x_M, y_M, count, key, tx) -> (local Weights, number
  of steps, sum of their mean CE): exactly E·⌈count/B⌉ steps, whatever M
  (a count of 0 takes none).
  """
  length = steps_per_epoch(n_max, batch_size) * batch_size
  rows_B = jnp.arange(batch_size)

  def train(start: Weights, ctx: LocalContext, x_M, y_M, count, key,
            tx: optax.GradientTransformation):
    orders_E = jax.vmap(lambda e: epoch_order(order_key(key, e), count, n_max,
                                              length))(jnp.arange(epochs))
    spe = jnp.maximum((count + batch_size - 1) // batch_size, 1)
    total = epochs * ((count + batch_size - 1) // batch_size)

    def body(state):
      carry, loss_sum, t = state
      e, j = t // spe, t % spe
      pos_B = jax.lax.dynamic_slice(orders_E[e], (j * batch_size,),
                                    (batch_size,))
      valid_B = j * batch_size + rows_B < count
      carry, ce = step(carry, x_M[pos_B], y_M[pos_B],
                       valid_B.astype(jnp.float32), augment_key(key, t), ctx,
                       valid_B)
      return carry, loss_sum + ce, t + 1

    trainable = start.trainable()
    init = ((trainable, start.batch_stats, tx.init(trainable)),
            jnp.zeros((), jnp.float32), jnp.zeros((), jnp.int32))
    (tr, stats, _), loss_sum, steps = jax.lax.while_loop(
        lambda s: s[2] < total, body, init)
    return Weights(tr['params'], stats, tr['extra']), steps, loss_sum

  return train


# FedBN ('local' BN policy): which leaves stay with the client.
def _is_bn(path: tuple[str, ...]) -> bool:
  return any(k.startswith('bn') for k in path[:-1])


def bn_part(w: Weights) -> dict[str, PyTree]:
  """The BN scales/biases (modules named bn*) and all running statistics."""
  flat = flax.traverse_util.flatten_dict(w.params)
  bn = {k: v for k, v in flat.items() if _is_bn(k)}
  return {'params': flax.traverse_util.unflatten_dict(bn),
          'batch_stats': w.batch_stats}


def with_bn_part(w: Weights, part: dict[str, PyTree]) -> Weights:
  """`w` with its BN leaves replaced by `part` (from bn_part)."""
  flat = flax.traverse_util.flatten_dict(w.params)
  flat.update(flax.traverse_util.flatten_dict(part['params']))
  return Weights(flax.traverse_util.unflatten_dict(flat),
                 part['batch_stats'], w.extra)


def start_weights(global_w: Weights, state: alg_lib.ClientState,
                  bn_policy: str, bn_first: str = 'init') -> Weights:
  """θt; under FedBN (bn_policy 'local') with the client's own BN layers.

  Before a client's first participation its own BN layers are those it was
  initialised with (`init_states`: θ0's, as every client model in FedBN's
  code starts as a copy of the server model, and its BN is never
  overwritten), or with bn_first='average' the server's current average.
  """
  if bn_policy != 'local':
    return global_w
  if bn_first == 'init':
    return with_bn_part(global_w, state.local)
  first = state.rounds == 0
  part = jax.tree.map(lambda g, own: jnp.where(first, g, own),
                      bn_part(global_w), state.local)
  return with_bn_part(global_w, part)


def sign_agreement(a: PyTree, b: PyTree) -> jax.Array:
  """Fraction of elements where sign(a) == sign(b) (0 counts as +), jittable.

  The traced counterpart of `valley_jax.tree.sign_consistency_ratio`.
  """
  pairs = zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True)
  same = sum(jnp.sum((x >= 0) == (y >= 0), dtype=jnp.int32) for x, y in pairs)
  total = sum(x.size for x in jax.tree.leaves(a))
  return same.astype(jnp.float32) / max(total, 1)


def client_metrics(local: Weights, start: Weights, steps, loss_sum):
  """Sign consistency and drift of θ^k against θt, mean local CE."""
  return {'sign_consistency': sign_agreement(local.params, start.params),
          'drift': optax.tree.norm(optax.tree.sub(local.params, start.params)),
          'train_loss': loss_sum / jnp.maximum(steps, 1).astype(jnp.float32),
          'steps': steps.astype(jnp.float32)}
