"""FedSign, the paper's Eq. 1 (Li et al., "Exploring and Exploiting the
Asymmetric Valley of Deep Neural Networks", NeurIPS 2024, Sect. 6.2).

Client k starts from θt and minimises, per batch,

    L^k(θ) = CE(θ) − γ · Σ_i [ sgp(θt_i)·σ(θ_i) + sgp(−θt_i)·σ(−θ_i) ],

summed over every element i of every model parameter (σ = sigmoid,
sgp(x) = 1 for x > 0 else 0). The term rewards local parameters for keeping
the sign of the global ones; each element's gradient is γ·σ'(θ_i) (times ∓1)
whatever the model's size. Elements with θt_i = 0 get no term. The server
averages as FedAvg. γ ∈ {0.001, 0.01, 0.1} in Table 1; γ = 0 is FedAvg.

>>> make({'gamma': 0.1}).hparams['gamma']
0.1
"""

from typing import Any, Mapping

import jax
import jax.numpy as jnp

from valley_jax.fed.algorithm import (Algorithm, check_hparams,
                                      check_nonnegative)

DEFAULTS = {'gamma': 0.01}


def sign_reward(params, anchor) -> jax.Array:
  """Σ_i sgp(θt_i)·σ(θ_i) + sgp(−θt_i)·σ(−θ_i) over all elements."""
  def leaf(p, a):
    return jnp.sum(jnp.where(a > 0, jax.nn.sigmoid(p), 0.0) +
                   jnp.where(a < 0, jax.nn.sigmoid(-p), 0.0))
  return sum(jax.tree.leaves(jax.tree.map(leaf, params, anchor)))


def make(hparams: Mapping[str, Any] | None = None) -> Algorithm:
  """FedSign with hyperparameter gamma (>= 0)."""
  hp = check_hparams('fedsign', hparams, DEFAULTS)
  check_nonnegative(hp, 'gamma')
  gamma = float(hp['gamma'])

  def local_loss(trainable, features, batch, ctx):
    del features, batch
    return -gamma * sign_reward(trainable['params'], ctx.anchor.params)

  return Algorithm('fedsign', hp, local_loss=local_loss)
