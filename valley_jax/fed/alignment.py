"""Experimental: client models aligned to the global model before averaging.

With config.fed.align, each participant's trained weights have their hidden
units permuted to match the server's model of the round (weight matching,
Ainsworth et al., "Git Re-Basin", ICLR 2023; core/permute.py) before the
server averages them, in the spirit of matched averaging (Wang et al.,
"Federated Learning with Matched Averaging", ICLR 2020). Every client
starts the round from the server's model, so after a few local steps the
matching is usually the identity and the option changes nothing; it can
matter with many local steps or large learning rates. It is experimental:
no paper result here depends on it.

The matching runs on the host (numpy and scipy), called from the jitted
round through `jax.pure_callback`; the plain reference round
(fed/reference.py) calls `align_weights` directly. Only algorithms whose
client messages and states are not parameter-shaped (FedAvg, FedProx) and
the averaged BN policy are accepted: permuting the weights without
SCAFFOLD's control variates, FedDyn's gradients or MOON's previous model
would mismatch them, and FedBN's local BN layers stay unpermuted.
"""

from typing import Any

import jax
import numpy as np

from valley_jax.core import permute
from valley_jax.errors import InputError
from valley_jax.fed.algorithm import Weights

ALIGNABLE = ('fedavg', 'fedprox')


def check(algorithm_name: str, bn_policy: str, model: Any = None) -> None:
  """Raises InputError unless alignment applies (module doc).

  Args:
    algorithm_name: config.fed.algorithm.
    bn_policy: config.fed.bn_policy.
    model: the model, when built: its permutation spec must exist.
  """
  if algorithm_name not in ALIGNABLE:
    raise InputError(f'config.fed.align works with {ALIGNABLE}, not '
                     f'{algorithm_name!r} (its parameter-shaped states '
                     'would not be permuted); set config.fed.align=False.')
  if bn_policy != 'average':
    raise InputError("config.fed.align needs config.fed.bn_policy='average' "
                     '(FedBN keeps BN layers local, unpermuted).')
  if model is not None:
    permute.check_model(model)


def align_weights(model: Any, server: Weights, w: Weights) -> Weights:
  """One client's weights with its units permuted to the server's.

  Args:
    model: the network.
    server: the server's weights of the round.
    w: the client's trained weights.

  Returns:
    The permuted weights (numpy leaves; `extra` unchanged).
  """
  va = {'params': server.params, 'batch_stats': server.batch_stats}
  vb = {'params': w.params, 'batch_stats': w.batch_stats}
  out, _ = permute.align(model, va, vb)
  return Weights(out['params'], out.get('batch_stats', {}), w.extra)


def make_aligner(model: Any):
  """fn(server_weights, w_S, active_S) -> w_S for the jitted round: every
  active slot's weights aligned to the server's on the host.

  Args:
    model: the network.

  Returns:
    The function, traceable (jax.pure_callback).
  """

  def host(server, w_S, active_S):
    n = len(np.asarray(active_S))
    rows = [jax.tree.map(lambda a, i=i: np.asarray(a[i]), w_S)
            for i in range(n)]
    out = [align_weights(model, server, r) if active else r
           for r, active in zip(rows, np.asarray(active_S))]
    return jax.tree.map(lambda like, *a: np.stack(a).astype(like.dtype),
                        w_S, *out)

  def aligner(server: Weights, w_S: Weights, active_S: jax.Array) -> Weights:
    shapes = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype),
                          w_S)
    return jax.pure_callback(host, shapes, server, w_S, active_S)

  return aligner
