"""FedDyn (Acar, Zhao, Matas, Mattina, Whatmough, Saligrama, "Federated
Learning Based on Dynamic Regularization", ICLR 2021, Algorithm 1).

State: per client k (all K), g_k = ∇L_k at its last local model, zero at the
start; on the server h, zero at the start. α = 0.01 by default.

Local objective of client k in round t, per batch (θt the server model):

    L^k(θ) = CE(θ) − ⟨g_k, θ⟩ + α/2 · ||θ − θt||²,

over all model parameters; minimised with the same local optimiser as the
other algorithms (weight decay included). With θ_k its result:

    g_k ← g_k − α · (θ_k − θt)
    h   ← h − α · (1/K) Σ_{k∈S_t} (θ_k − θt)
    θ_{t+1} = mean_{k∈S_t} θ_k − h / α.

This is the authors' code (alpemreacar/FedDyn) with their λ_k = −g_k/α:
there the linear term is α⟨θ, λ_k − θt⟩ plus weight decay α, and the server
model is mean θ_k + mean_{all K} λ_k. As their code reports, the model to
evaluate (`eval_weights`) is the participants' mean (kept in the server state
as `avg`), while clients start from θ_{t+1}. The authors also divide α by
each client's relative data size; we keep the paper's one α. BN running
statistics are averaged as in FedAvg.

>>> make().hparams['alpha']
0.01
"""

from typing import Any, Mapping

import optax

from valley_jax.fed.algorithm import (Algorithm, ServerState, Weights,
                                      check_hparams, check_positive,
                                      masked_sum, sq_dist)

DEFAULTS = {'alpha': 0.01}


def make(hparams: Mapping[str, Any] | None = None) -> Algorithm:
  """FedDyn with the regularisation weight alpha (> 0)."""
  hp = check_hparams('feddyn', hparams, DEFAULTS)
  check_positive(hp, 'alpha')  # The server step divides by it.
  alpha = float(hp['alpha'])

  def init_server(w: Weights):
    return {'h': optax.tree.zeros_like(w.params), 'avg': w}

  def init_client(w: Weights):
    return {'grad': optax.tree.zeros_like(w.params)}

  def local_loss(trainable, features, batch, ctx):
    del features, batch
    theta = trainable['params']
    return (-optax.tree.vdot(ctx.client_aux['grad'], theta) +
            0.5 * alpha * sq_dist(theta, ctx.anchor.params))

  def client_update(ctx, local: Weights, steps):
    del steps
    delta = optax.tree.sub(local.params, ctx.anchor.params)
    grad = optax.tree.add_scale(ctx.client_aux['grad'], -alpha, delta)
    return {'grad': grad}, {'delta': delta}

  def server_update(server: ServerState, avg: Weights, messages_S, active_S,
                    num_clients: int) -> ServerState:
    total = masked_sum(messages_S['delta'], active_S)
    h = optax.tree.add_scale(server.aux['h'], -alpha / num_clients, total)
    params = optax.tree.add_scale(avg.params, -1.0 / alpha, h)
    return ServerState(Weights(params, avg.batch_stats, avg.extra),
                       {'h': h, 'avg': avg})

  def eval_weights(server: ServerState) -> Weights:
    return server.aux['avg']

  return Algorithm('feddyn', hp, init_server=init_server,
                   init_client=init_client, local_loss=local_loss,
                   client_update=client_update, server_update=server_update,
                   eval_weights=eval_weights)
