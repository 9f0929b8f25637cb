"""What a federated algorithm is: states, hooks and their defaults.

An `Algorithm` is a bundle of small pure functions over pytrees; the round
engine (`valley_jax.fed.rounds`) calls them in this order for round t:

  1. every sampled client k starts from the global weights θt (its `anchor`)
     and takes E epochs of local optimiser steps on

        CE(θ; batch) + local_loss(trainable, features, batch, ctx),

     with `correct_update(ctx, updates)` applied to each optimiser update;
  2. `client_update(ctx, local, steps)` gives the client's new algorithm state
     and a message for the server;
  3. the engine averages the clients' weights (uniformly over participants by
     default) and `server_update(server, avg, messages_S, active_S, K)` gives
     the next server state.

Unset hooks are FedAvg's: no extra loss, no correction, no client state, the
server takes the average. Everything an algorithm keeps (server state, the
per-client states of all K clients) is a pytree of arrays, so Orbax saves it.
"""

import dataclasses
from typing import Any, Callable, Mapping, NamedTuple

import flax
import jax
import jax.numpy as jnp
import optax

from valley_jax.errors import InputError

PyTree = Any

# The names of the config fields quoted in error messages.
FIELD = 'config.fed'


@flax.struct.dataclass
class Weights:
  """What clients train and the server averages.

  Attributes:
    params: the model's parameters.
    batch_stats: its BatchNorm running statistics ({} without BN).
    extra: parameters owned by the algorithm and trained with the model
      (MOON's projection head under classifier='representation'); {} for
      the others.
  """

  params: PyTree
  batch_stats: PyTree
  extra: PyTree

  def trainable(self) -> dict[str, PyTree]:
    """The tree the local optimiser updates: {'params', 'extra'}."""
    return {'params': self.params, 'extra': self.extra}


@flax.struct.dataclass
class ServerState:
  """The global model θt and the algorithm's server state (SCAFFOLD's c...)."""

  weights: Weights
  aux: PyTree


@flax.struct.dataclass
class ClientState:
  """One client's state; the engine keeps all K stacked on a leading axis.

  Attributes:
    aux: the algorithm's per-client state (SCAFFOLD c_k, FedDyn ∇L_k, MOON's
      previous local model); {} for FedAvg.
    local: under BN policy 'local' (FedBN), the client's own BN scales, biases
      and running statistics; {} otherwise.
    rounds: how many rounds the client took part in (int32).
  """

  aux: PyTree
  local: PyTree
  rounds: jax.Array


class Batch(NamedTuple):
  """One local batch: normalised inputs, labels, 0/1 weights of real rows."""

  x: jax.Array
  y: jax.Array
  w: jax.Array


@flax.struct.dataclass
class LocalContext:
  """What a client's hooks may read; fixed during its local training.

  Attributes:
    anchor: the weights the client started from (θt; under FedBN with its own
      BN layers).
    server_aux: the server's algorithm state.
    client_aux: this client's algorithm state before the round.
    first: True in the client's first participation.
    lr: the local learning rate (a traced input of the round).
    features_fn: (weights, x) -> penultimate features of that model on x in
      eval mode (MOON's global and previous models).
    round_index: the round t (0-based; MOON has no contrastive term in
      round 0 under first_negative='initial').
    data_weight: the client's relative data size n_k / mean_j n_j over all
      K clients (FedDyn's α_k = α / data_weight); 1 for an average client.
  """

  anchor: Weights
  server_aux: PyTree
  client_aux: PyTree
  first: jax.Array
  lr: jax.Array | float
  features_fn: Callable[[Weights, jax.Array], jax.Array] = flax.struct.field(
      pytree_node=False)
  round_index: jax.Array | int = 0
  data_weight: jax.Array | float = 1.0


def _empty(*_) -> dict[str, Any]:
  return {}


def _keep_client(ctx: LocalContext, local: Weights, steps):
  del local, steps
  return ctx.client_aux, {}


def _server_weights(server: ServerState) -> Weights:
  return server.weights


def take_average(server: ServerState, avg: Weights, messages_S, active_S,
                 num_clients: int) -> ServerState:
  """FedAvg's server step (Algorithm 1): θ_{t+1} = the clients' average."""
  del messages_S, active_S, num_clients
  return ServerState(avg, server.aux)


@dataclasses.dataclass(frozen=True)
class Algorithm:
  """A federated algorithm as pure hooks (see the module docstring).

  Attributes:
    name: registry name.
    hparams: its hyperparameters, defaults filled in.
    init_server: (θ0 weights) -> server aux state.
    init_client: (θ0 weights) -> one client's aux state; under
      independent_client_init, (the client's own initial weights) -> it.
    init_extra: (key, feature dim d) -> algorithm-owned trainable parameters,
      or None.
    local_loss: (trainable, features, batch, ctx) -> scalar added to the
      batch's mean CE, or None. `trainable` is {'params', 'extra'};
      `features` the local model's penultimate features (None unless
      needs_features).
    correct_update: (ctx, updates) -> updates, applied after the optimiser,
      or None.
    client_update: (ctx, local weights, number of local steps) ->
      (new client aux, message to the server).
    server_update: (server, average weights, messages stacked over the
      round's client slots, active_S mask, K) -> next server state.
    eval_weights: (server) -> the weights to evaluate as the global model.
    needs_features: the model must expose its representation (MOON).
    model_kwargs: options the model must be built with (FedPAN; MOON's
      projection head).
    independent_client_init: `rounds.init_states` gives every client its
      own initial weights, an independent model.init (and init_extra), and
      its aux state is init_client of those (MOON's first negative); else
      every client's aux is init_client(θ0).
    numeric: the hyperparameters that may be traced inputs of the round
      (γ, μ, τ, α, server_lr): a table compiles one program for all their
      values. The others (names, proj_dim, FedPAN's model options) shape
      the program.
    rebuild: (hparams) -> the same algorithm with these hyperparameters,
      unchecked and trace-safe (numeric values may be tracers); None for an
      algorithm without numeric hyperparameters.
  """

  name: str
  hparams: Mapping[str, Any]
  init_server: Callable[[Weights], PyTree] = _empty
  init_client: Callable[[Weights], PyTree] = _empty
  init_extra: Callable[[jax.Array, int], PyTree] | None = None
  local_loss: Callable[..., jax.Array] | None = None
  correct_update: Callable[[LocalContext, PyTree], PyTree] | None = None
  client_update: Callable[..., tuple[PyTree, PyTree]] = _keep_client
  server_update: Callable[..., ServerState] = take_average
  eval_weights: Callable[[ServerState], Weights] = _server_weights
  needs_features: bool = False
  model_kwargs: Mapping[str, Any] = dataclasses.field(default_factory=dict)
  independent_client_init: bool = False
  numeric: tuple[str, ...] = ()
  rebuild: Callable[[Mapping[str, Any]], 'Algorithm'] | None = None

  def numeric_values(self) -> dict[str, float]:
    """{name: value} of the numeric hyperparameters (float)."""
    return {k: float(self.hparams[k]) for k in self.numeric}

  def with_values(self, values: Mapping[str, Any]) -> 'Algorithm':
    """This algorithm with its numeric hyperparameters set to `values`
    (Python floats or traced arrays); the others as they are."""
    if not self.numeric:
      return self
    return self.rebuild({**self.hparams, **{k: values[k]
                                           for k in self.numeric}})


def check_hparams(name: str, hparams: Mapping[str, Any] | None,
                  defaults: Mapping[str, Any]) -> dict[str, Any]:
  """Defaults overridden by `hparams`; unknown keys raise ValueError."""
  given = dict(hparams or {})
  unknown = sorted(set(given) - set(defaults))
  if unknown:
    raise InputError(f'{FIELD}.hparams has {unknown}, which {name} does not '
                     f'take; it takes {sorted(defaults)}.')
  return {**defaults, **given}


def check_nonnegative(hp: Mapping[str, Any], *keys: str) -> None:
  for k in keys:
    if not hp[k] >= 0:
      raise InputError(f'{FIELD}.hparams.{k} must be >= 0, got {hp[k]}.')


def check_positive(hp: Mapping[str, Any], *keys: str) -> None:
  for k in keys:
    if not hp[k] > 0:
      raise InputError(f'{FIELD}.hparams.{k} must be > 0, got {hp[k]}.')


def check_choice(hp: Mapping[str, Any], key: str,
                 choices: tuple[str, ...]) -> None:
  """InputError naming the field unless hp[key] is one of `choices`."""
  if hp[key] not in choices:
    raise InputError(f'{FIELD}.hparams.{key}={hp[key]!r} must be one of '
                     f'{choices}.')


def masked_sum(messages_S: PyTree, active_S: jax.Array) -> PyTree:
  """Σ over the round's active client slots of stacked messages."""
  def total(m):
    w = active_S.astype(m.dtype).reshape((-1,) + (1,) * (m.ndim - 1))
    return jnp.sum(m * w, axis=0)
  return jax.tree.map(total, messages_S)


def sq_dist(a: PyTree, b: PyTree) -> jax.Array:
  """||a − b||² over the whole tree."""
  return optax.tree.vdot(optax.tree.sub(a, b), optax.tree.sub(a, b))
