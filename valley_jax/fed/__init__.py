"""Federated learning simulator: algorithms as pure hooks, clients as an axis.

The paper's second application (Sect. 6.2, Algorithm 1, Table 1): FedAvg,
FedProx, MOON, FedDyn, SCAFFOLD, FedPAN and FedSign, where every round's
sampled clients train at once as an array axis of one compiled computation.

Driving a run (what `valley_jax.fed.runner.run` does):

  1. `alg = build_algorithm(name, hparams)` (config.fed.algorithm,
     config.fed.hparams); build the model with `**alg.model_kwargs` (FedPAN's
     position encodings) and initialise its variables θ0;
  2. `data = ClientData.from_arrays(*pad_clients(x, y, parts), mesh=mesh)`;
  3. `server, clients = init_states(alg, model, variables, K, ...)`;
  4. `round_fn = make_round(model, alg, data, optim=..., fraction=Q,
     local_epochs=E, batch_size=B, seed=seed, mesh=mesh)`; then for
     t = 0 .. T−1: `server, clients, metrics = round_fn(server, clients, t)`;
  5. evaluate `alg.eval_weights(server)` (`global_weights`); under the FedBN
     policy first `recalibrate` it on training batches.

Everything a run must checkpoint is `server` (a `ServerState`) and `clients`
(a `ClientState` with a leading axis of K): pytrees of arrays that Orbax's
StandardSave stores and StandardRestore reads back into the same structure
(restore against `init_states`' result as the target). Keys are folded from
(seed, round[, client]), so a run restored after round t and continued with
round t+1 gives the same global model as an uninterrupted run.

>>> import numpy as np, jax
>>> from valley_jax import models
>>> model = models.build_model('mlp', 3, hidden=(4,))
>>> v = model.init(jax.random.key(0), np.zeros((1, 2)))
>>> rng = np.random.default_rng(0)
>>> x_KM = rng.normal(size=(4, 6, 2)).astype(np.float32)
>>> data = ClientData.from_arrays(x_KM, rng.integers(0, 3, (4, 6)),
...                               np.array([6, 5, 6, 3]))
>>> alg = build_algorithm('fedsign', {'gamma': 0.01})
>>> server, clients = init_states(alg, model, v, 4, input_shape=(2,),
...                               key=jax.random.key(1))
>>> optim = SGD(lr=0.1, momentum=0.9, weight_decay=5e-4)
>>> round_fn = make_round(model, alg, data, optim=optim, fraction=0.5,
...                       local_epochs=2, batch_size=4, seed=0)
>>> server, clients, metrics = round_fn(server, clients, 0)
>>> round_fn.num_sampled, int(clients.rounds.sum())
(2, 2)
"""

from typing import Any, Callable, Mapping, NamedTuple

from valley_jax.errors import InputError
from valley_jax.fed import (fedavg, feddyn, fedpan, fedprox, fedsign, moon,
                            scaffold)
from valley_jax.fed.algorithm import (FIELD, Algorithm, Batch, ClientState,
                                      LocalContext, ServerState, Weights)
from valley_jax.fed.local import (apply_model, client_optimizer,
                                  feature_dim, sign_agreement)
from valley_jax.fed.reference import make_reference_round
from valley_jax.fed.rounds import (AGGREGATIONS, BN_POLICIES, ClientData,
                                   auto_chunk, check_round_config,
                                   init_states, make_round, num_sampled,
                                   recalibrate, sample_clients)

ALGORITHMS: dict[str, Callable[[Mapping[str, Any] | None], Algorithm]] = {
    'fedavg': fedavg.make,
    'fedprox': fedprox.make,
    'moon': moon.make,
    'feddyn': feddyn.make,
    'scaffold': scaffold.make,
    'fedpan': fedpan.make,
    'fedsign': fedsign.make,
}


class SGD(NamedTuple):
  """A config.optim stand-in: the paper's local SGD."""

  lr: float = 0.03
  momentum: float = 0.9
  weight_decay: float = 5e-4
  name: str = 'sgd'


def build_algorithm(name: str,
                    hparams: Mapping[str, Any] | None = None) -> Algorithm:
  """An algorithm of the registry with its hyperparameters checked.

  Args:
    name: a key of ALGORITHMS (config.fed.algorithm).
    hparams: overrides of its defaults (config.fed.hparams); unknown keys
      and out-of-range values raise ValueError naming the field.
  Returns:
    The Algorithm (pure hooks; see valley_jax.fed.algorithm).
  """
  if name not in ALGORITHMS:
    raise InputError(f'Unknown {FIELD}.algorithm={name!r}; choose one of '
                     f'{sorted(ALGORITHMS)}.')
  return ALGORITHMS[name](dict(hparams or {}))


def global_weights(algorithm: Algorithm, server: ServerState) -> Weights:
  """The weights to evaluate as the round's global model."""
  return algorithm.eval_weights(server)


__all__ = [
    'AGGREGATIONS', 'ALGORITHMS', 'BN_POLICIES', 'FIELD', 'SGD', 'Algorithm',
    'Batch', 'ClientData', 'ClientState', 'LocalContext', 'ServerState',
    'Weights', 'apply_model', 'auto_chunk', 'build_algorithm',
    'check_round_config', 'client_optimizer', 'feature_dim', 'global_weights',
    'init_states', 'make_reference_round', 'make_round', 'num_sampled',
    'recalibrate', 'sample_clients', 'sign_agreement',
]
