"""The vectorised round engine: sampled clients as an array axis of one jit.

One round (paper Algorithm 1):

  1. sample S = max(round(Q·K), 1) of the K clients without replacement, with
     a key folded from (seed, round), so a resumed run samples the same ones;
  2. every sampled client trains locally (`valley_jax.fed.local`): the client
     axis is split over the mesh's devices (`sharding.map_blocks`), and each
     device runs its clients `chunk` at a time side by side (`vmap` when chunk
     covers them all, else `lax.map(..., batch_size=chunk)`); when S does not
     divide by the devices, idle client slots pad the axis (no steps, weight 0,
     their state never written back);
  3. the server averages the clients' weights (parameters, BN statistics and
     algorithm-owned parameters): uniformly over the participants (Algorithm
     1, `aggregation='uniform'`) or weighted by their sample counts
     (`'weighted'`), then applies the algorithm's server step;
  4. the participants' states are written back into the [K, ...] client
     states.

BatchNorm policy: 'average' averages the running statistics with the
parameters (default); 'local' is FedBN (Li et al., ICLR 2021): each client
keeps its own BN scales, biases and statistics between rounds (it starts from
the global ones in its first round). The server still averages them, which
gives the global model's BN scales and biases; evaluate it after
`recalibrate` has recomputed its statistics on training data.

Per-round metrics, means over the participants: `sign_consistency` of θ^k
with θt (the fraction of parameter elements whose signs agree), `drift`
||θ^k − θt||, `train_loss` (each client's mean CE over its local steps),
`steps`; and `clients`, the sampled client ids.
"""

import math
from typing import Any, Callable, Mapping

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from valley_jax import checks, sharding
from valley_jax.core import sweep
from valley_jax.errors import InputError
from valley_jax.fed import alignment, local
from valley_jax.fed.algorithm import (FIELD, Algorithm, ClientState,
                                      LocalContext, ServerState, Weights)

PyTree = Any
AGGREGATIONS = ('uniform', 'weighted')
BN_POLICIES = ('average', 'local')
BN_FIRST = checks.FEDBN_FIRST
_SAMPLE = 1  # Salt of the sampling key (clients use 2: local.client_key).


@flax.struct.dataclass
class ClientData:
  """All clients' training data on the device, padded to the largest client.

  Attributes:
    x: [K, M, ...] inputs (uint8 images are normalised on the device).
    y: [K, M] integer labels.
    counts: [K] int32, the number of real rows of each client.
  """

  x: jax.Array
  y: jax.Array
  counts: jax.Array

  @classmethod
  def from_arrays(cls, x, y, counts, mesh=None) -> 'ClientData':
    """From numpy x [K, M, ...], y [K, M], counts [K], e.g.
    `ClientData.from_arrays(*data.pad_clients(x, y, parts))`; replicated on
    `mesh` when one is given."""
    x, y, counts = np.asarray(x), np.asarray(y), np.asarray(counts)
    if x.shape[:2] != y.shape or counts.shape != y.shape[:1]:
      raise InputError(f'Client arrays disagree: x {x.shape}, y {y.shape}, '
                       f'counts {counts.shape}; want [K, M, ...], [K, M], '
                       '[K].')
    if counts.min() < 1 or counts.max() > x.shape[1]:
      raise InputError(f'Client counts must be in [1, {x.shape[1]}], got '
                       f'[{counts.min()}, {counts.max()}].')
    data = cls(jnp.asarray(x), jnp.asarray(y, jnp.int32),
               jnp.asarray(counts, jnp.int32))
    return data if mesh is None else sharding.put_replicated(mesh, data)

  @property
  def num_clients(self) -> int:
    return self.counts.shape[0]

  @property
  def max_count(self) -> int:
    return self.x.shape[1]


def num_sampled(num_clients: int, fraction: float) -> int:
  """S = max(round(Q·K), 1) clients per round (Python's round).

  >>> num_sampled(100, 0.1), num_sampled(20, 0.01)
  (10, 1)
  """
  check_fraction(fraction)
  return max(round(fraction * num_clients), 1)


def check_fraction(fraction: float) -> None:
  if not 0 < fraction <= 1:
    raise InputError(f'{FIELD}.fraction={fraction} must be in (0, 1].')


def sample_clients(seed: int, round_index, num_clients: int,
                   fraction: float) -> jax.Array:
  """The sorted ids of round `round_index`'s clients (jittable).

  Drawn without replacement with a key folded from (seed, round).
  """
  s = num_sampled(num_clients, fraction)
  key = jax.random.fold_in(
      jax.random.fold_in(jax.random.key(seed), _SAMPLE), round_index)
  return jnp.sort(jax.random.choice(key, num_clients, (s,), replace=False))


def _broadcast(tree: PyTree, n: int) -> PyTree:
  return jax.tree.map(lambda a: jnp.broadcast_to(a, (n, *jnp.shape(a))), tree)


def init_states(algorithm: Algorithm, model: nn.Module,
                variables: Mapping[str, PyTree], num_clients: int, *,
                input_shape: tuple[int, ...], key: jax.Array,
                bn_policy: str = 'average',
                mesh=None) -> tuple[ServerState, ClientState]:
  """The server state at θ0 and the initial states of all K clients.

  Every client's aux state is algorithm.init_client(θ0), or, under
  algorithm.independent_client_init (MOON's first negative), init_client
  of the client's own initial weights (`client_initial_weights`).

  Args:
    algorithm: from `build_algorithm`.
    model: the network (built with algorithm.model_kwargs).
    variables: its {'params', 'batch_stats'} at θ0.
    num_clients: K.
    input_shape: one example's shape (MOON's head needs the feature width).
    key: initialises algorithm-owned parameters (MOON's head) and the
      clients' own initial weights.
    bn_policy: 'average' or 'local' (FedBN).
    mesh: replicate the states on this mesh (None: leave them).
  Returns:
    (server state, client states stacked on a leading axis of size K).
  """
  check_bn_policy(bn_policy)
  check_model_kwargs(algorithm, model)
  extra, dim = {}, 0
  if algorithm.init_extra is not None or algorithm.needs_features:
    dim = local.feature_dim(model, input_shape, algorithm.name)
  if algorithm.init_extra is not None:
    extra = algorithm.init_extra(key, dim)
  w = Weights(variables['params'], variables.get('batch_stats') or {}, extra)
  server = ServerState(w, algorithm.init_server(w))
  own = local.bn_part(w) if bn_policy == 'local' else {}
  if algorithm.independent_client_init:
    aux_K = jax.vmap(algorithm.init_client)(client_initial_weights(
        algorithm, model, num_clients, input_shape=input_shape, key=key,
        dim=dim))
  else:
    aux_K = _broadcast(algorithm.init_client(w), num_clients)
  states = (server, ClientState(aux_K, _broadcast(own, num_clients),
                                jnp.zeros((num_clients,), jnp.int32)))
  return states if mesh is None else sharding.put_replicated(mesh, states)


def client_initial_weights(algorithm: Algorithm, model: nn.Module,
                           num_clients: int, *, input_shape: tuple[int, ...],
                           key: jax.Array, dim: int = 0) -> Weights:
  """Every client's own random initial model, stacked over the K clients.

  Client k's are independent of θ0 and of the other clients': with
  `k_model, k_extra = jax.random.split(jax.random.fold_in(key, k))`, its
  parameters and BN statistics are `model.init(k_model, x, train=False)`
  on zeros x [1, *input_shape] and its algorithm-owned parameters
  `algorithm.init_extra(k_extra, dim)` ({} without init_extra). As the
  MOON authors' main.py, where every client's net is its own init_nets()
  model until it first trains.

  One client after another (`lax.map` in one jit): for the digits MLP and
  4 clients on CPU this compiled in 1.8 s against 4.9 s vmapped.
  """
  shape_key = (model, algorithm.name, tuple(sorted(
      (k, str(v)) for k, v in algorithm.hparams.items()
      if k not in algorithm.numeric)), num_clients, tuple(input_shape), dim)
  if shape_key not in _CLIENT_INITS:  # One compilation for a table's runs.
    x = jnp.zeros((1, *input_shape), jnp.float32)

    def one(key, k):
      k_model, k_extra = jax.random.split(jax.random.fold_in(key, k))
      v = model.init(k_model, x, train=False)
      extra = ({} if algorithm.init_extra is None else
               algorithm.init_extra(k_extra, dim))
      return Weights(v['params'], v.get('batch_stats') or {}, extra)

    _CLIENT_INITS[shape_key] = jax.jit(lambda key: jax.lax.map(
        lambda k: one(key, k), jnp.arange(num_clients)))
  return _CLIENT_INITS[shape_key](key)


# client_initial_weights' compiled functions, by (model, algorithm and its
# non-numeric hyperparameters, K, input shape, feature width): init_extra
# does not read the numeric ones.
_CLIENT_INITS: dict[tuple, Any] = {}


def check_model_kwargs(algorithm: Algorithm, model: nn.Module) -> None:
  """InputError if the model lacks an option the algorithm needs.

  Only options the module has as attributes are checked (registry models
  have them all; a custom module without the attribute is trusted).
  """
  for name, want in algorithm.model_kwargs.items():
    got = getattr(model, name, want)
    if got != want:
      raise InputError(f'{FIELD}.algorithm={algorithm.name!r} needs the '
                       f'model built with {name}={want!r} '
                       f'(algorithm.model_kwargs), got {got!r}.')


def check_bn_policy(bn_policy: str, bn_first: str = 'init') -> None:
  if bn_policy not in BN_POLICIES:
    raise InputError(f'Unknown {FIELD}.bn_policy={bn_policy!r}; choose one '
                     f'of {BN_POLICIES}.')
  if bn_first not in BN_FIRST:
    raise InputError(f'Unknown {FIELD}.bn_first={bn_first!r}; choose one of '
                     f'{BN_FIRST}.')


def check_round_config(*, fraction: float, local_epochs: int,
                       batch_size: int, aggregation: str, bn_policy: str,
                       chunk: int | None, bn_first: str = 'init') -> None:
  """ValueError naming the config field of a bad round setting."""
  check_fraction(fraction)
  check_bn_policy(bn_policy, bn_first)
  if aggregation not in AGGREGATIONS:
    raise InputError(f'Unknown {FIELD}.aggregation={aggregation!r}; choose '
                     f'one of {AGGREGATIONS}.')
  for name, v in (('local_epochs', local_epochs), ('batch_size', batch_size),
                  ('chunk', 1 if chunk is None else chunk)):
    if not (isinstance(v, (int, np.integer)) and v > 0):
      raise InputError(f'{FIELD}.{name}={v} must be a positive integer.')


def aggregation_weights(active_S: jax.Array, counts_S: jax.Array,
                        aggregation: str) -> jax.Array:
  """Weights over the round's client slots summing to 1 (idle slots 0)."""
  w = active_S.astype(jnp.float32)
  if aggregation == 'weighted':
    w = w * counts_S.astype(jnp.float32)
  return w / jnp.sum(w)


def weighted_average(tree_S: PyTree, w_S: jax.Array) -> PyTree:
  """Σ_s w_s · tree_s over the leading axis."""
  return jax.tree.map(lambda a: jnp.tensordot(w_S, a, axes=1).astype(a.dtype),
                      tree_S)


def recalibrate(model: nn.Module, weights: Weights, x_SB: jax.Array,
                mean=(0.0,), std=(1.0,)) -> Weights:
  """The weights with BN statistics recomputed on batches x_SB (FedBN eval).

  Uses `sweep.recalibrate`: exact statistics of the whole set. Weights
  without BN are returned as they are.
  """
  if not jax.tree.leaves(weights.batch_stats):
    return weights
  stats = sweep.recalibrate(model, weights.params, weights.batch_stats,
                            x_SB, mean, std)
  return Weights(weights.params, stats, weights.extra)


def auto_chunk(params: PyTree, num_clients: int) -> int:
  """Clients side by side per device, by the sweep engine's measurements.

  Vmapping copies of a conv net turns its convolutions into grouped ones,
  which were several times slower than one copy at a time on CPU
  (`sweep.auto_chunk`; FED-ROUND on 2 CPU cores, 2026-12-01: 5.4 s with
  chunk 1, 26.0 s with 10 clients vmapped); on a GPU a JAX prototype of
  FED-ROUND ran 10 ResNet20 clients faster vmapped (0.75 s) than one at a
  time (0.89 s). So:
  all clients at once on accelerators and for dense-only nets, one at a time
  for conv nets on CPU. Override with config.fed.chunk.
  """
  if jax.default_backend() != 'cpu':
    return num_clients
  return sweep.auto_chunk(params, num_clients)


def relative_size(counts_K: jax.Array, client_id) -> jax.Array:
  """n_k / mean_j n_j over all K clients (LocalContext.data_weight).

  >>> float(relative_size(jnp.array([6, 2, 4]), 0))
  1.5
  """
  counts_K = counts_K.astype(jnp.float32)
  return counts_K[client_id] / jnp.mean(counts_K)


def _take(tree: PyTree, idx: jax.Array) -> PyTree:
  return jax.tree.map(lambda a: jnp.take(a, idx, axis=0, mode='clip'), tree)


def _put(tree_K: PyTree, idx: jax.Array, tree_S: PyTree) -> PyTree:
  """Writes rows idx (out-of-range ids are dropped) of the [K, ...] tree."""
  return jax.tree.map(lambda a, v: a.at[idx].set(v, mode='drop'), tree_K,
                      tree_S)


def _mean_metrics(metrics_S: dict[str, jax.Array],
                  active_S: jax.Array) -> dict[str, jax.Array]:
  w = active_S.astype(jnp.float32)
  return {k: jnp.sum(v * w) / jnp.sum(w) for k, v in metrics_S.items()}


def knobs(algorithm: Algorithm, optim, seed: int) -> dict[str, Any]:
  """The traced inputs of a round besides the states, the round index and the
  data: the run's seed, the local optimiser's numbers and the algorithm's
  numeric hyperparameters (`Algorithm.numeric`). A table passes each cell's
  own knobs to one compiled round.

  >>> from valley_jax import fed
  >>> k = knobs(fed.build_algorithm('fedsign'), fed.SGD(), 3)
  >>> int(k['seed']), sorted(k['hparams'])
  (3, ['gamma'])
  """
  return {'seed': np.int32(seed), 'lr': np.float32(optim.lr),
          'momentum': np.float32(optim.momentum or 0.0),
          'weight_decay': np.float32(optim.weight_decay),
          'hparams': {k: np.float32(v)
                      for k, v in algorithm.numeric_values().items()}}


def _constant_knobs(algorithm: Algorithm, optim, seed: int) -> dict[str, Any]:
  """The same numbers as Python constants (baked into the program)."""
  return {'seed': int(seed), 'lr': float(optim.lr),
          'momentum': float(optim.momentum or 0.0),
          'weight_decay': float(optim.weight_decay),
          'hparams': algorithm.numeric_values()}


def _client_tx(optim_name: str, kn) -> optax.GradientTransformation:
  if optim_name == 'adamw':
    return optax.adamw(kn['lr'], weight_decay=kn['weight_decay'])
  return local.sgd(kn['lr'], kn['momentum'], kn['weight_decay'])


def make_client_fn(model: nn.Module, algorithm: Algorithm, optim_name: str,
                   *, local_epochs: int, batch_size: int, max_count: int,
                   mean=(0.0,), std=(1.0,), augment: bool = False,
                   bn_policy: str = 'average', bn_first: str = 'init',
                   dtype=jnp.float32) -> Callable[..., Any]:
  """One client's round, pure: what the engine maps over the client axis.

  Returns fn(server, data, round_index, knobs, client_id, active, state) ->
  (local weights, new client state, message, metrics); an idle slot
  (active False) takes no step. `knobs` (see `knobs`) may be traced.
  """
  features_fn = local.make_features_fn(model, dtype)

  def client(server: ServerState, data: ClientData, round_index, kn,
             client_id, active, state: ClientState):
    alg = algorithm.with_values(kn['hparams'])
    tx = _client_tx(optim_name, kn)
    step = local.make_local_step(model, alg, tx, mean, std, augment, dtype)
    train = local.make_local_train(step, epochs=local_epochs,
                                   batch_size=batch_size, n_max=max_count)
    count = jnp.where(active, data.counts[client_id], 0)
    start = local.start_weights(server.weights, state, bn_policy, bn_first)
    ctx = LocalContext(start, server.aux, state.aux, state.rounds == 0,
                       kn['lr'], features_fn, round_index=round_index,
                       data_weight=relative_size(data.counts, client_id))
    key = local.client_key(kn['seed'], round_index, client_id)
    w, steps, loss_sum = train(start, ctx, data.x[client_id],
                               data.y[client_id], count, key, tx)
    aux, message = alg.client_update(ctx, w, steps)
    own = local.bn_part(w) if bn_policy == 'local' else state.local
    new_state = ClientState(aux, own, state.rounds + 1)
    return w, new_state, message, local.client_metrics(w, start, steps,
                                                       loss_sum)

  return client


def make_round(model: nn.Module, algorithm: Algorithm, data: ClientData, *,
               optim, fraction: float, local_epochs: int, batch_size: int,
               seed: int, mean=(0.0,), std=(1.0,), augment: bool = False,
               aggregation: str = 'uniform', bn_policy: str = 'average',
               bn_first: str = 'init',
               chunk: int | None = None, mesh=None, dtype=jnp.float32,
               donate: bool = False, group: bool = True,
               constants: bool = False, align: bool = False
               ) -> Callable[..., Any]:
  """The jitted round: fn(server, clients_K, round_index, knobs=None,
  data=None) -> (server, clients_K, metrics).

  The seed, the optimiser's lr, momentum and weight decay and the
  algorithm's numeric hyperparameters are traced inputs (`knobs`), so one
  compiled program serves every seed and grid value of a table whose
  client data have one shape; `data` (another run's `ClientData` of the
  same shape) and `knobs` default to this run's. `fn.many` runs R runs
  side by side: every input stacked on a leading run axis (the round index
  shared), vmapped in one program.

  Args:
    model: the network (built with algorithm.model_kwargs).
    algorithm: from `build_algorithm`.
    data: all clients' data (`ClientData`), replicated on `mesh`.
    optim: config.optim (name, lr, momentum, weight_decay); constant LR.
    fraction: Q, the fraction of clients per round.
    local_epochs: E.
    batch_size: B.
    seed: the run's seed (sampling and shuffling keys).
    mean, std: input normalisation of uint8 images.
    augment: random crop and flip per local step (colour images).
    aggregation: 'uniform' (Algorithm 1) or 'weighted' by sample counts.
    bn_policy: 'average' or 'local' (FedBN).
    bn_first: FedBN: a client's BN layers before its first participation,
      'init' (its initial ones, as FedBN's code) or 'average' (the server's).
    chunk: clients side by side per device (None: auto_chunk).
    mesh: split the client axis over this mesh (None: one device).
    dtype: compute dtype of the forward pass (parameters stay float32).
    donate: donate the input states' buffers (saves memory on accelerators).
    group: run the sampled clients in order of their step counts, so that
      the clients side by side in a chunk have similar numbers of steps
      (`group_order`); the results are put back in slot order before the
      average.
    constants: bake the seed and the numbers into the program instead
      (one compilation per value; for tests and comparisons).
    align: experimental: permute each participant's units to the server's
      before averaging (fed/alignment.py).
  Returns:
    round_fn; round_index may be a Python int (no recompilation per round).
  """
  check_round_config(fraction=fraction, local_epochs=local_epochs,
                     batch_size=batch_size, aggregation=aggregation,
                     bn_policy=bn_policy, chunk=chunk, bn_first=bn_first)
  local.client_optimizer(optim)  # Checks its name and lr.
  if align:
    alignment.check(algorithm.name, bn_policy, model)
  client = make_client_fn(model, algorithm, optim.name,
                          local_epochs=local_epochs, batch_size=batch_size,
                          max_count=data.max_count, mean=mean, std=std,
                          augment=augment, bn_policy=bn_policy,
                          bn_first=bn_first, dtype=dtype)
  devices = sharding.size(mesh)
  round_impl = _make_round_impl(
      algorithm, _map_clients(client, chunk, mesh, group),
      num_clients=data.num_clients, fraction=fraction,
      aggregation=aggregation, devices=devices, chunk=chunk,
      aligner=alignment.make_aligner(model) if align else None)
  default = knobs(algorithm, optim, seed)
  if constants:
    fixed = _constant_knobs(algorithm, optim, seed)
    impl = lambda s, c, t, d, kn: round_impl(s, c, t, d, fixed)  # noqa: E731
  else:
    impl = round_impl
  kwargs = {'donate_argnums': (0, 1)} if donate else {}
  if mesh is not None:
    kwargs['out_shardings'] = sharding.replicated(mesh)
  jitted = jax.jit(impl, **kwargs)
  many = jax.jit(jax.vmap(impl, in_axes=(0, 0, None, 0, 0)), **kwargs)

  def round_fn(server: ServerState, clients_K: ClientState, round_index,
               kn=None, data_override=None):
    return jitted(server, clients_K, jnp.asarray(round_index, jnp.int32),
                  data if data_override is None else data_override,
                  default if kn is None else kn)

  def many_fn(servers, clients, round_index, data_R, knobs_R):
    return many(servers, clients, jnp.asarray(round_index, jnp.int32),
                data_R, knobs_R)

  round_fn.num_sampled = num_sampled(data.num_clients, fraction)
  round_fn.jitted = jitted
  round_fn.many = many_fn
  round_fn.many_jitted = many
  return round_fn


def group_order(counts_S: jax.Array, active_S: jax.Array) -> jax.Array:
  """The slots in order of their clients' sizes (idle slots count 0), ties
  in slot order: the order in which the engine runs them, so that the
  clients of one chunk have similar step counts E·⌈n_k/B⌉.

  >>> group_order(jnp.array([30, 5, 30, 12]), jnp.array([1, 1, 1, 0]) > 0)
  Array([3, 1, 0, 2], dtype=int32)
  """
  n = jnp.where(active_S, counts_S, 0)
  return jnp.argsort(n, stable=True).astype(jnp.int32)


def _chunk_size(chunk: int | None, params: PyTree, n: int) -> int:
  return min(chunk or auto_chunk(params, n), n)


def _map_clients(client, chunk: int | None, mesh, group: bool):
  """fn(server, data, clients_K, idx_S, active_S, round, knobs) over slots.

  Per device, `chunk` clients side by side: vmap when it covers them all,
  else lax.map(batch_size=chunk), in `group_order` when `group`; with a
  mesh, the slots are split over it.
  """

  def run_clients(server, data, clients_K, idx_S, active_S, round_index, kn):
    def one(args):
      return client(server, data, round_index, kn, *args)

    n = idx_S.shape[0]
    order = (group_order(jnp.take(data.counts, idx_S), active_S) if group
             else jnp.arange(n))
    xs = (idx_S[order], active_S[order], _take(clients_K, idx_S[order]))
    size = _chunk_size(chunk, server.weights.params, n)
    out = (jax.vmap(one)(xs) if size >= n else
           jax.lax.map(one, xs, batch_size=size))
    back = jnp.argsort(order)  # Slot order again: the average's order.
    return jax.tree.map(lambda a: a[back], out)

  if mesh is None:
    return run_clients
  return sharding.map_blocks(run_clients, mesh,
                             (False, False, False, True, True, False, False))


def chunk_steps(steps_S: jax.Array, devices: int, size: int) -> jax.Array:
  """The steps each chunk computes, [devices, chunks]: a chunk of clients
  side by side loops as long as its longest client. Slots are split over the
  devices in blocks, each block sorted by steps (`group_order`) and cut
  into chunks of `size` (the last one shorter, as lax.map does).

  >>> chunk_steps(jnp.array([4, 1, 2, 6]), 1, 3).tolist()
  [[4, 6]]
  """
  per = jnp.sort(steps_S.reshape(devices, -1), axis=1)
  n = per.shape[1]
  size = min(size, n)
  full = n // size * size
  parts = [per[:, :full].reshape(devices, -1, size).max(-1)]
  if full < n:
    parts.append(per[:, full:].max(-1, keepdims=True))
  return jnp.concatenate(parts, axis=1)


def chunk_sizes(slots: int, devices: int, size: int) -> list[int]:
  """The number of clients in each chunk of `chunk_steps`' columns.

  >>> chunk_sizes(4, 1, 3)
  [3, 1]
  """
  n = slots // devices
  size = min(size, n)
  return [size] * (n // size) + ([n % size] if n % size else [])


def _make_round_impl(algorithm: Algorithm, run_clients, *, num_clients: int,
                     fraction: float, aggregation: str, devices: int,
                     chunk: int | None, aligner=None):
  """The pure round: sample, train the slots, average, server step, write
  back. Slots are padded to a multiple of the devices with idle ones."""
  k, s = num_clients, num_sampled(num_clients, fraction)
  slots = -(-s // devices) * devices

  def round_impl(server, clients_K, round_index, data, kn):
    alg = algorithm.with_values(kn['hparams'])
    idx = sample_clients(kn['seed'], round_index, k, fraction)
    idx_S = jnp.zeros((slots,), jnp.int32).at[:s].set(idx)
    active_S = jnp.arange(slots) < s
    w_S, states_S, messages_S, metrics_S = run_clients(
        server, data, clients_K, idx_S, active_S, round_index, kn)
    weights_S = aggregation_weights(active_S, jnp.take(data.counts, idx_S),
                                    aggregation)
    if aligner is not None:
      w_S = aligner(server.weights, w_S, active_S)
    avg = weighted_average(w_S, weights_S)
    server = alg.server_update(server, avg, messages_S, active_S, k)
    clients_K = _put(clients_K, jnp.where(active_S, idx_S, k), states_S)
    steps_S = jnp.where(active_S, metrics_S['steps'], 0).astype(jnp.int32)
    size = _chunk_size(chunk, server.weights.params, slots // devices)
    return server, clients_K, {**_mean_metrics(metrics_S, active_S),
                               'clients': idx,
                               'real_steps': jnp.sum(steps_S),
                               'chunk_steps': chunk_steps(steps_S, devices,
                                                          size)}

  return round_impl


def steps_of(count: int, local_epochs: int, batch_size: int) -> int:
  """E·⌈n/B⌉: the real local steps of a client with n examples."""
  return local_epochs * math.ceil(count / batch_size)
