"""SCAFFOLD with option-II control variates (Karimireddy, Kale, Mohri, Reddi,
Stich, Suresh, "SCAFFOLD: Stochastic Controlled Averaging for Federated
Learning", ICML 2020, Algorithm 1).

State: a server control variate c and one c_k per client for all K clients,
all zero at the start, shaped like the model's parameters.

Local step (learning rate η, K_k local steps in the round): the optimiser
(momentum SGD with weight decay) turns the mini-batch gradient into its
update u, and the drift correction is applied to the parameters beside it,

    y ← y + u − η · (c − c_k),

as NIID-Bench's SCAFFOLD does with momentum (the correction does not enter
the momentum buffer; with plain SGD this is the paper's y ← y − η(g − c_k + c)).

After local training, option II:

    c_k⁺ = c_k − c + (θt − y_k) / (K_k · η),     Δc_k = c_k⁺ − c_k.

Server, with global step η_g (`server_lr`, 1 by default) and N = K clients:

    θ_{t+1} = θt + η_g · mean_k (y_k − θt),    c ← c + (1/N) Σ_{k∈S_t} Δc_k.

BN running statistics are averaged as in FedAvg.

>>> make().hparams['server_lr']
1.0
"""

from typing import Any, Mapping

import jax.numpy as jnp
import optax

from valley_jax.fed.algorithm import (Algorithm, ServerState, Weights,
                                      check_hparams, check_positive,
                                      masked_sum)

DEFAULTS = {'server_lr': 1.0}


def make(hparams: Mapping[str, Any] | None = None) -> Algorithm:
  """SCAFFOLD (option II) with the global step server_lr (> 0)."""
  hp = check_hparams('scaffold', hparams, DEFAULTS)
  check_positive(hp, 'server_lr')
  return _build(hp)


def _build(hp: Mapping[str, Any]) -> Algorithm:
  """SCAFFOLD of checked hparams; server_lr may be a traced value."""
  server_lr = hp['server_lr']

  def zeros(w: Weights):
    return {'c': optax.tree.zeros_like(w.params)}

  def correct_update(ctx, updates):
    drift = optax.tree.sub(ctx.server_aux['c'], ctx.client_aux['c'])
    return {**updates,
            'params': optax.tree.add_scale(updates['params'], -ctx.lr, drift)}

  def client_update(ctx, local: Weights, steps):
    scale = 1.0 / (jnp.maximum(steps, 1).astype(jnp.float32) * ctx.lr)
    c_k = ctx.client_aux['c']
    new_c_k = optax.tree.add_scale(
        optax.tree.sub(c_k, ctx.server_aux['c']), scale,
        optax.tree.sub(ctx.anchor.params, local.params))
    return {'c': new_c_k}, {'dc': optax.tree.sub(new_c_k, c_k)}

  def server_update(server: ServerState, avg: Weights, messages_S, active_S,
                    num_clients: int) -> ServerState:
    theta = server.weights.params
    params = optax.tree.add_scale(theta, server_lr,
                                  optax.tree.sub(avg.params, theta))
    dc = masked_sum(messages_S['dc'], active_S)
    c = optax.tree.add_scale(server.aux['c'], 1.0 / num_clients, dc)
    return ServerState(Weights(params, avg.batch_stats, avg.extra), {'c': c})

  return Algorithm('scaffold', dict(hp), init_server=zeros,
                   init_client=zeros, correct_update=correct_update,
                   client_update=client_update, server_update=server_update,
                   numeric=('server_lr',), rebuild=_build)
