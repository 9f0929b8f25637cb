"""FedProx (Li, Sahu, Zaheer, Sanjabi, Talwalkar, Smith, "Federated
Optimization in Heterogeneous Networks", MLSys 2020).

Client k starts from θt and minimises, per batch,

    L^k(θ) = CE(θ) + μ/2 · ||θ − θt||²,

the squared norm over all model parameters (not the BN running statistics).
The server averages as FedAvg. μ = 0.001 by default; μ = 0 is FedAvg.

>>> make({'mu': 0.01}).hparams['mu']
0.01
"""

from typing import Any, Mapping

from valley_jax.fed.algorithm import (Algorithm, check_hparams,
                                      check_nonnegative, sq_dist)

DEFAULTS = {'mu': 0.001}


def make(hparams: Mapping[str, Any] | None = None) -> Algorithm:
  """FedProx with hyperparameter mu (>= 0)."""
  hp = check_hparams('fedprox', hparams, DEFAULTS)
  check_nonnegative(hp, 'mu')
  return _build(hp)


def _build(hp: Mapping[str, Any]) -> Algorithm:
  """FedProx of checked hparams; mu may be a traced value."""
  mu = hp['mu']

  def local_loss(trainable, features, batch, ctx):
    del features, batch
    return 0.5 * mu * sq_dist(trainable['params'], ctx.anchor.params)

  return Algorithm('fedprox', dict(hp), local_loss=local_loss,
                   numeric=('mu',), rebuild=_build)
