"""FedDyn (Acar, Zhao, Matas, Mattina, Whatmough, Saligrama, "Federated
Learning Based on Dynamic Regularization", ICLR 2021, Algorithm 1).

State: per client k (all K), g_k = ∇L_k at its last local model, zero at the
start; on the server h, zero at the start. α = 0.01 by default.

Local objective of client k in round t, per batch (θt the server model):

    L^k(θ) = CE(θ) − ⟨g_k, θ⟩ + α_k/2 · ||θ − θt||²,

over all model parameters; minimised with the same local optimiser as the
other algorithms (weight decay included). With θ_k its result:

    g_k ← g_k − α_k · (θ_k − θt)
    h   ← h − α · (1/K) Σ_{k∈S_t} (θ_k − θt)
    θ_{t+1} = mean_{k∈S_t} θ_k − h / α.

hparams `alpha_scaling` (valley_jax.checks.FEDDYN_ALPHA_SCALINGS) sets α_k:

* 'data_size' (the default): α_k = α / (n_k / mean_j n_j), the mean over all
  K clients, as the authors' code does (github alpemreacar/FedDyn,
  utils_methods.py, train_FedDyn: `weight_list = weight_list /
  np.sum(weight_list) * n_clnt` and `alpha_coef_adpt = alpha_coef /
  weight_list[clnt]`): a client with more data than average is held less
  tightly to θt.
* 'none': α_k = α, the paper's Algorithm 1 (valley_jax's FedDyn before this
  option).

This is the authors' code with their λ_k = −g_k/α_k: there
(utils_general.py, train_feddyn_mdl) the local loss is CE + α_k⟨θ, λ_k − θt⟩
with weight decay α_k + wd, i.e. CE − ⟨g_k, θ⟩ + α_k/2·||θ − θt||² + wd/2·
||θ||² up to a constant; the history update `local_param_list[clnt] +=
curr_model_par - cld_mdl_param` is unscaled (λ_k += θ_k − θt, so g_k ←
g_k − α_k·(θ_k − θt) as α_k is fixed per client), and the server model
`cld_mdl_param = avg_mdl_param + np.mean(local_param_list, axis=0)` = mean
θ_k + mean_{all K} λ_k does not involve α_k: it is the h step above. As
their code reports, the model to evaluate (`eval_weights`) is the
participants' mean (kept in the server state as `avg`), while clients start
from θ_{t+1}. BN running statistics are averaged as in FedAvg.

>>> make().hparams
{'alpha': 0.01, 'alpha_scaling': 'data_size'}
"""

from typing import Any, Mapping

import optax

from valley_jax.checks import FEDDYN_ALPHA_SCALINGS
from valley_jax.fed.algorithm import (Algorithm, ServerState, Weights,
                                      check_choice, check_hparams,
                                      check_positive, masked_sum, sq_dist)

DEFAULTS = {'alpha': 0.01, 'alpha_scaling': 'data_size'}


def make(hparams: Mapping[str, Any] | None = None) -> Algorithm:
  """FedDyn with the regularisation weight alpha (> 0) and alpha_scaling."""
  hp = check_hparams('feddyn', hparams, DEFAULTS)
  check_positive(hp, 'alpha')  # The server step divides by it.
  check_choice(hp, 'alpha_scaling', FEDDYN_ALPHA_SCALINGS)
  return _build(hp)


def _build(hp: Mapping[str, Any]) -> Algorithm:
  """FedDyn of checked hparams; alpha may be a traced value."""
  alpha = hp['alpha']
  by_size = hp['alpha_scaling'] == 'data_size'

  def client_alpha(ctx):
    """α_k: α / (n_k / mean_j n_j) under 'data_size', else α."""
    return alpha / ctx.data_weight if by_size else alpha

  def init_server(w: Weights):
    return {'h': optax.tree.zeros_like(w.params), 'avg': w}

  def init_client(w: Weights):
    return {'grad': optax.tree.zeros_like(w.params)}

  def local_loss(trainable, features, batch, ctx):
    del features, batch
    theta = trainable['params']
    return (-optax.tree.vdot(ctx.client_aux['grad'], theta) +
            0.5 * client_alpha(ctx) * sq_dist(theta, ctx.anchor.params))

  def client_update(ctx, local: Weights, steps):
    del steps
    delta = optax.tree.sub(local.params, ctx.anchor.params)
    grad = optax.tree.add_scale(ctx.client_aux['grad'], -client_alpha(ctx),
                                delta)
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

  return Algorithm('feddyn', dict(hp), init_server=init_server,
                   init_client=init_client, local_loss=local_loss,
                   client_update=client_update, server_update=server_update,
                   eval_weights=eval_weights, numeric=('alpha',),
                   rebuild=_build)
