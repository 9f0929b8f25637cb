"""The plain reference round: clients one after another in Python.

No scan, no vmap, no masks: every local step is one call of a plain jitted
step on a batch of its real size (a last partial batch is a smaller batch),
the average is a Python sum, the metrics use `valley_jax.tree`, and what a
client's hooks read of the round (its index t and the client's relative data
size n_k / mean_j n_j, FedDyn's α scaling) is computed here in float64. It
shares with the fast path only the specification (client sampling, epoch
orders, the initial states, the algorithms' hooks and the optimiser), so the
tests that compare the two check the engine: padding, masking, the scan,
vmap/lax.map chunks, device sharding, gathers and scatters. Slow; for tests
and debugging.
"""

import math
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from valley_jax.core import tree
from valley_jax.fed import alignment, local
from valley_jax.fed.algorithm import (Algorithm, ClientState, LocalContext,
                                      ServerState, Weights)
from valley_jax.fed.rounds import (ClientData, check_round_config,
                                   sample_clients)

PyTree = Any


def _weights(counts: np.ndarray, aggregation: str) -> list[float]:
  """The average's weights, computed here and not taken from the engine
  (a test against this path must not share the engine's bug): 1/S each
  ('uniform'), or n_k / Σ n ('weighted'), in float64."""
  n = np.asarray(counts, np.float64)
  if aggregation == 'weighted':
    return (n / n.sum()).tolist()
  return [1.0 / len(n)] * len(n)


def _row(tree_K: PyTree, k: int) -> PyTree:
  return jax.tree.map(lambda a: a[k], tree_K)


def _stack(trees: list[PyTree]) -> PyTree:
  return jax.tree.map(lambda *a: jnp.stack(a), *trees)


def _weighted_sum(w_S, arrays) -> jax.Array:
  """Σ_s w_s · a_s, one client after another."""
  total = sum(float(w) * a for w, a in zip(w_S, arrays, strict=True))
  return total.astype(arrays[0].dtype)


def _train_client(step, start: Weights, ctx: LocalContext, tx, x_M, y_M,
                  count: int, key, epochs: int, batch_size: int):
  """Plain loops over epochs and batches; returns (weights, losses)."""
  n_max = x_M.shape[0]
  spe = local.steps_per_epoch(n_max, batch_size)
  trainable = start.trainable()
  carry = (trainable, start.batch_stats, tx.init(trainable))
  losses = []
  own = math.ceil(count / batch_size)  # The client's steps per epoch.
  for e in range(epochs):
    order = np.asarray(local.epoch_order(local.order_key(key, e), count,
                                         n_max, spe * batch_size))[:count]
    for j in range(math.ceil(count / batch_size)):
      pos = order[j * batch_size:(j + 1) * batch_size]
      ones = jnp.ones(len(pos), jnp.float32)
      carry, ce = step(carry, x_M[pos], y_M[pos], ones,
                       local.augment_key(key, e * own + j), ctx)
      losses.append(float(ce))
  tr, stats, _ = carry
  return Weights(tr['params'], stats, tr['extra']), losses


def make_reference_round(model: nn.Module, algorithm: Algorithm,
                         data: ClientData, *, optim, fraction: float,
                         local_epochs: int, batch_size: int, seed: int,
                         mean=(0.0,), std=(1.0,), augment: bool = False,
                         aggregation: str = 'uniform',
                         bn_policy: str = 'average',
                         bn_first: str = 'init',
                         align: bool = False) -> Callable[..., Any]:
  """The slow round; same arguments and results as `make_round`'s round_fn.

  Only the local step is jitted (once per batch size); everything else runs
  op by op in Python.
  """
  check_round_config(fraction=fraction, local_epochs=local_epochs,
                     batch_size=batch_size, aggregation=aggregation,
                     bn_policy=bn_policy, chunk=None, bn_first=bn_first)
  if align:
    alignment.check(algorithm.name, bn_policy, model)
  x_K, y_K = np.asarray(data.x), np.asarray(data.y)
  counts = np.asarray(data.counts)
  sizes = counts / counts.astype(np.float64).mean()  # n_k / mean_j n_j.
  tx, lr = local.client_optimizer(optim)
  step = jax.jit(local.make_local_step(model, algorithm, tx, mean, std,
                                       augment))
  features_fn = local.make_features_fn(model)

  def one_client(server, state, k: int, round_index: int):
    start = local.start_weights(server.weights, state, bn_policy, bn_first)
    ctx = LocalContext(start, server.aux, state.aux, state.rounds == 0, lr,
                       features_fn, round_index=jnp.int32(round_index),
                       data_weight=jnp.float32(sizes[k]))
    w, losses = _train_client(
        step, start, ctx, tx, x_K[k], y_K[k], int(counts[k]),
        local.client_key(seed, round_index, k), local_epochs, batch_size)
    aux, message = algorithm.client_update(ctx, w, jnp.int32(len(losses)))
    own = local.bn_part(w) if bn_policy == 'local' else state.local
    metrics = {
        'sign_consistency': tree.sign_consistency_ratio(w.params,
                                                        start.params),
        'drift': float(tree.norm(jax.tree.map(jnp.subtract, w.params,
                                              start.params))),
        'train_loss': float(np.mean(losses)), 'steps': float(len(losses))}
    return w, ClientState(aux, own, state.rounds + 1), message, metrics

  def round_fn(server: ServerState, clients_K: ClientState,
               round_index: int):
    idx = np.asarray(sample_clients(seed, round_index, len(counts), fraction))
    results = [one_client(server, _row(clients_K, k), int(k), round_index)
               for k in idx]
    ws = _weights(np.asarray(counts)[idx], aggregation)
    trained = [r[0] for r in results]
    if align:  # Experimental (fed/alignment.py), one client at a time.
      trained = [alignment.align_weights(model, server.weights, w)
                 for w in trained]
    avg = jax.tree.map(lambda *a: _weighted_sum(ws, a), *trained)
    server = algorithm.server_update(server, avg,
                                     _stack([r[2] for r in results]),
                                     jnp.ones(len(idx), bool), len(counts))
    for k, r in zip(idx, results, strict=True):
      clients_K = jax.tree.map(lambda a, v, k=k: a.at[k].set(v), clients_K,
                               r[1])
    metrics = [r[3] for r in results]
    out = {m: float(np.mean([d[m] for d in metrics])) for m in metrics[0]}
    return server, clients_K, {**out, 'clients': idx}

  return round_fn
