"""TrainState, optimisers of the paper, and jit-compiled train/eval steps."""

from typing import Any, Callable

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from valley_jax import sharding
from valley_jax.data import pipeline
from valley_jax.errors import InputError

OPTIMIZERS = ('sgd', 'adamw')


@flax.struct.dataclass
class TrainState:
  step: jax.Array
  params: Any
  batch_stats: Any
  opt_state: Any


def make_optimizer(cfg, total_steps: int) -> tuple[
    optax.GradientTransformation, optax.Schedule]:
  """The paper's optimisers with a cosine decay over the whole run.

  'sgd': momentum SGD with L2 weight decay added to the gradient before the
  momentum, as torch.optim.SGD(weight_decay=...) does. 'adamw': decoupled
  weight decay (the ViT recipe).

  Args:
    cfg: config.optim with name, lr, momentum, weight_decay.
    total_steps: number of optimiser steps of the whole run.
  Returns:
    (optax transformation, learning-rate schedule).
  """
  schedule = optax.cosine_decay_schedule(cfg.lr, max(total_steps, 1))
  if cfg.name == 'sgd':
    tx = optax.chain(optax.add_decayed_weights(cfg.weight_decay),
                     optax.sgd(schedule, momentum=cfg.momentum))
  elif cfg.name == 'adamw':
    tx = optax.adamw(schedule, weight_decay=cfg.weight_decay)
  else:
    raise InputError(f'Unknown optimizer {cfg.name!r}; choose one of '
                     f'{OPTIMIZERS} (config.optim.name).')
  return tx, schedule


def init_variables(model: nn.Module, key: jax.Array,
                   input_shape: tuple[int, ...]) -> dict[str, Any]:
  """{'params', 'batch_stats'} of a fresh model (batch_stats may be {})."""
  x = jnp.zeros((1, *input_shape), jnp.float32)
  variables = jax.jit(lambda k: model.init(k, x, train=False))(key)
  return {'params': variables['params'],
          'batch_stats': variables.get('batch_stats', {})}


def init_state(variables: dict[str, Any],
               tx: optax.GradientTransformation) -> TrainState:
  return TrainState(jnp.zeros((), jnp.int32), variables['params'],
                    variables['batch_stats'], tx.init(variables['params']))


def cross_entropy(logits: jnp.ndarray, labels: jnp.ndarray) -> jnp.ndarray:
  """Per-example CE loss in float32."""
  return optax.softmax_cross_entropy_with_integer_labels(
      logits.astype(jnp.float32), labels)


def apply_model(model: nn.Module, params, batch_stats, x, train: bool):
  """Forward pass; in train mode also returns the updated batch statistics."""
  variables = {'params': params, 'batch_stats': batch_stats}
  if train and batch_stats:
    logits, updates = model.apply(variables, x, train=True,
                                  mutable=['batch_stats'])
    return logits, updates['batch_stats']
  return model.apply(variables, x, train=train), batch_stats


def make_train_step(model: nn.Module, tx: optax.GradientTransformation,
                    mean, std, augment: bool) -> Callable[..., Any]:
  """A pure step (state, x, y, key) -> (state, metrics); jit it outside."""

  def step(state: TrainState, x, y, key):
    x = pipeline.normalize(x, mean, std)
    if augment:
      x = pipeline.augment(jax.random.fold_in(key, state.step), x)

    def loss_fn(params):
      logits, stats = apply_model(model, params, state.batch_stats, x, True)
      return cross_entropy(logits, y).mean(), (logits, stats)

    grads, (logits, stats) = jax.grad(loss_fn, has_aux=True)(state.params)
    loss = cross_entropy(logits, y).mean()
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    metrics = {'loss': loss, 'accuracy': jnp.mean(logits.argmax(-1) == y)}
    return TrainState(state.step + 1, params, stats, opt_state), metrics

  return step


def make_eval_step(model: nn.Module, mean, std,
                   dtype=jnp.float32) -> Callable[..., Any]:
  """(params, batch_stats, x, y, weight) -> summed loss, correct, count.

  `dtype` is the compute dtype of the inputs; the loss is summed in float32.
  """

  def step(params, batch_stats, x, y, w):
    x = pipeline.normalize(x, mean, std).astype(dtype)
    logits, _ = apply_model(model, params, batch_stats, x, False)
    return {'loss': jnp.sum(cross_entropy(logits, y) * w),
            'correct': jnp.sum((logits.argmax(-1) == y) * w),
            'count': jnp.sum(w)}

  return step


def make_per_example_step(model: nn.Module, mean, std,
                          dtype=jnp.float32) -> Callable[..., Any]:
  """(params, batch_stats, x, y) -> per-example loss and 0/1 correctness.

  The per-example form of `make_eval_step` (same forward pass), for
  intervals over the evaluation set (`valley_jax.core.stats`).
  """

  def step(params, batch_stats, x, y):
    x = pipeline.normalize(x, mean, std).astype(dtype)
    logits, _ = apply_model(model, params, batch_stats, x, False)
    return {'loss': cross_entropy(logits, y),
            'correct': (logits.argmax(-1) == y).astype(jnp.float32)}

  return step


def evaluate_per_example(per_example_step, mesh, params, batch_stats, x, y,
                         batch_size: int) -> dict[str, np.ndarray]:
  """Per-example loss and 0/1 correctness [N] of all of (x, y), in order.

  Args:
    per_example_step: a jitted `make_per_example_step`.
    mesh: the device mesh (batches are split over its data axis).
    params: the model's parameters.
    batch_stats: its BN statistics ({} without BN).
    x: the inputs [N, ...].
    y: the labels [N].
    batch_size: examples per call (padded batches; the padding is dropped).

  Returns:
    {'loss': float64 [N], 'correct': float64 [N] of 0/1}; the mean of
    'correct' is `evaluate`'s accuracy.
  """
  idx_SB, _ = pipeline.padded_batches(len(y), batch_size)
  outs = []
  for idx in idx_SB:
    xb, yb = sharding.gather(mesh, (x, y), idx)
    outs.append(sharding.to_host(per_example_step(params, batch_stats, xb,
                                                  yb)))
  return {k: np.concatenate([np.asarray(o[k], np.float64) for o in outs]
                            )[:len(y)] for k in ('loss', 'correct')}


def evaluate(eval_step, mesh, params, batch_stats, x, y,
             batch_size: int) -> dict[str, float]:
  """Mean loss and accuracy over all of (x, y), padded batches masked out."""
  idx_SB, w_SB = pipeline.padded_batches(len(y), batch_size)
  sums = []
  for idx, w in zip(idx_SB, w_SB):
    xb, yb = sharding.gather(mesh, (x, y), idx)
    sums.append(eval_step(params, batch_stats, xb, yb,
                          sharding.put_sharded(mesh, w)))
  tot = jax.tree.map(lambda *a: float(np.sum(a)), *sums)
  return {'loss': tot['loss'] / tot['count'],
          'accuracy': tot['correct'] / tot['count']}
