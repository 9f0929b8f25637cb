"""FedSign, the paper's Eq. 1 (Li et al., "Exploring and Exploiting the
Asymmetric Valley of Deep Neural Networks", NeurIPS 2024, Sect. 6.2).

Client k starts from θt and minimises, per batch,

    L^k(θ) = CE(θ) − γ · R(θ),   r_i = sgp(θt_i)·σ(θ_i) + sgp(−θt_i)·σ(−θ_i),

(σ = sigmoid, sgp(x) = 1 for x > 0 else 0), which rewards local parameters
for keeping the sign of the global ones. Elements with θt_i = 0 get no term.
The server averages as FedAvg. γ ∈ {0.001, 0.01, 0.1} in Table 1; γ = 0 is
FedAvg.

The paper does not say how R reduces the r_i over the model. hparams
`reduction` chooses:

* 'tensor_mean' (the default): R = (1/T) Σ_tensors Σ_{i in tensor} r_i,
  T the number of parameter tensors. This is how the first author's FedDyn
  scales its regulariser (github.com/lxcnju/FedRepo, algorithms/feddyn.py
  lines 188-199: each tensor's term summed over its elements, the total
  divided by `cnt`, the number of `model.named_parameters()`). An element's
  push per step is γ·σ'(θ_i)/T.
* 'mean_of_means': R = (1/T) Σ_tensors mean_{i in tensor} r_i, a mean of
  per-tensor means. This is how the same code base's FedProx scales its
  term (FedRepo algorithms/fedreg.py 153-162 and MAP algorithms/fedreg.py
  166-173: `smooth_l1_loss` with reduction 'mean' per tensor, then `/ cnt`).
  An element's push is γ·σ'(θ_i)/(T·n_tensor): FedSign is then close to
  FedAvg at the paper's γ. Which of these the paper's FedSign used is not
  known, so γ's scale is open (docs/fedsim.md).
* 'sum': R = Σ_i r_i over every element. Each element's push is γ·σ'(θ_i)
  whatever the model's size: with momentum 0.9 it reaches 10·γ/4 per step,
  which at the paper's γ = 0.1 is larger than most conv weights of ResNet20
  (earlier versions of valley_jax used this; see docs/fedsim.md).
* 'element_mean': R = (1/N) Σ_i r_i, N the number of elements.

>>> make({'gamma': 0.1}).hparams
{'gamma': 0.1, 'reduction': 'tensor_mean'}
"""

from typing import Any, Mapping

import jax
import jax.numpy as jnp

from valley_jax.checks import FEDSIGN_REDUCTIONS
from valley_jax.fed.algorithm import (Algorithm, check_choice,
                                      check_hparams, check_nonnegative)

DEFAULTS = {'gamma': 0.01, 'reduction': 'tensor_mean'}


def sign_reward(params, anchor, reduction: str = 'sum') -> jax.Array:
  """R(θ): the r_i of the module doc, reduced over the tree by `reduction`."""
  def leaf(p, a):
    return jnp.sum(jnp.where(a > 0, jax.nn.sigmoid(p), 0.0) +
                   jnp.where(a < 0, jax.nn.sigmoid(-p), 0.0))
  sums = jax.tree.leaves(jax.tree.map(leaf, params, anchor))
  total = sum(sums)
  if reduction == 'sum':
    return total
  if reduction == 'tensor_mean':
    return total / len(sums)
  if reduction == 'mean_of_means':
    sizes = [p.size for p in jax.tree.leaves(params)]
    return sum(s / n for s, n in zip(sums, sizes, strict=True)) / len(sums)
  check_choice({'reduction': reduction}, 'reduction', FEDSIGN_REDUCTIONS)
  return total / sum(x.size for x in jax.tree.leaves(params))


def make(hparams: Mapping[str, Any] | None = None) -> Algorithm:
  """FedSign with hyperparameters gamma (>= 0) and reduction."""
  hp = check_hparams('fedsign', hparams, DEFAULTS)
  check_nonnegative({'gamma': hp['gamma']}, 'gamma')
  check_choice(hp, 'reduction', FEDSIGN_REDUCTIONS)
  return _build(hp)


def _build(hp: Mapping[str, Any]) -> Algorithm:
  """FedSign of checked hparams; gamma may be a traced value."""
  gamma, reduction = hp['gamma'], hp['reduction']

  def local_loss(trainable, features, batch, ctx):
    del features, batch
    return -gamma * sign_reward(trainable['params'], ctx.anchor.params,
                                reduction)

  return Algorithm('fedsign', dict(hp), local_loss=local_loss,
                   numeric=('gamma',), rebuild=_build)
