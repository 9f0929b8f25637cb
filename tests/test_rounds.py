"""fed/rounds.py: the vectorised round engine against the plain reference
(fed/reference.py) and plain training steps."""

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest
from conftest import (FED_HPARAMS as HPARAMS, FED_OPTIM as OPTIM,
                      FED_SETTING as SETTING, fed_client_data as _client_data,
                      fed_close as _close, fed_setup as _setup)

from valley_jax import fed, models, sharding
from valley_jax.core import steps
from valley_jax.fed import local


def _fast_rounds(model, alg, data, server, clients, rounds=2, **kw):
  round_fn = fed.make_round(model, alg, data, optim=OPTIM,
                            **{**SETTING, **kw})
  for t in range(rounds):
    server, clients, metrics = round_fn(server, clients, t)
  return server, clients, metrics


def _reference_rounds(model, alg, data, server, clients, rounds=2, **kw):
  round_fn = fed.make_reference_round(model, alg, data, optim=OPTIM,
                                      **{**SETTING, **kw})
  for t in range(rounds):
    server, clients, metrics = round_fn(server, clients, t)
  return server, clients, metrics


def _check_same(fast, ref, bn=True):
  (s1, c1, m1), (s2, c2, m2) = fast, ref
  _close(s1, s2)
  _close(c1, c2)
  np.testing.assert_array_equal(m1['clients'], m2['clients'])
  for k in ('drift', 'train_loss', 'steps'):
    np.testing.assert_allclose(float(m1[k]), m2[k], rtol=1e-5, atol=1e-6)
  # With BN, the dense bias before it gets a zero gradient up to rounding, so
  # the sign of a few elements near 0 is noise.
  np.testing.assert_allclose(float(m1['sign_consistency']),
                             m2['sign_consistency'], atol=0.03 if bn else 1e-6)
  assert 0.5 < m2['sign_consistency'] < 1.0 and m2['drift'] > 0


# FedPAN (FedAvg on a PAN model) is checked with the FedBN variant below.
# FedSign (no BN, the quickest) is the reference round's fast-tier check.
@pytest.mark.parametrize('name', [
    n if n == 'fedsign' else pytest.param(n, marks=pytest.mark.slow)
    for n in sorted(set(HPARAMS) - {'fedpan'})])
def test_vmapped_clients_equal_the_reference(name):
  data = _client_data()
  # FedSign's term follows the sign of θt, which is rounding noise for the
  # dense bias before a BN (its gradient is 0 up to rounding): no BN there.
  bn = name != 'fedsign'
  model, alg, server, clients = _setup(name, data, bn=bn)
  _check_same(_fast_rounds(model, alg, data, server, clients),
              _reference_rounds(model, alg, data, server, clients), bn)


# The defaults (conftest's FED_HPARAMS) are checked above; here the other
# options: MOON's old head and negative, its head in `extra` with each
# client's own initial negative (new in round 1's first participants), and
# FedDyn's single α.
@pytest.mark.slow
@pytest.mark.parametrize('name,options', [
    ('moon', {'classifier': 'representation', 'first_negative': 'global'}),
    ('moon', {'classifier': 'representation', 'first_negative': 'initial'}),
    ('feddyn', {'alpha_scaling': 'none'}),
])
def test_algorithm_options_equal_the_reference(name, options):
  data = _client_data()
  alg = fed.build_algorithm(name, {**HPARAMS[name], **options})
  model = models.build_model('mlp', 4, hidden=(8,), **alg.model_kwargs)
  v = model.init(jax.random.key(0), jnp.zeros((1, 6)))
  server, clients = fed.init_states(alg, model, v, data.num_clients,
                                    input_shape=(6,), key=jax.random.key(1))
  _check_same(_fast_rounds(model, alg, data, server, clients),
              _reference_rounds(model, alg, data, server, clients))


@pytest.mark.slow
@pytest.mark.parametrize('name,kw', [
    ('scaffold', {'chunk': 2}),  # lax.map: a chunk of 2 and a remainder.
    ('fedpan', {'bn_policy': 'local', 'aggregation': 'weighted'}),
    ('fedavg', {'bn_policy': 'local', 'bn_first': 'average'}),
])
def test_chunked_and_policy_variants_equal_the_reference(name, kw):
  data = _client_data()
  model, alg, server, clients = _setup(name, data, kw.get('bn_policy',
                                                          'average'))
  ref_kw = {k: v for k, v in kw.items() if k != 'chunk'}
  fast = _fast_rounds(model, alg, data, server, clients, **kw)
  _check_same(fast, _reference_rounds(model, alg, data, server, clients,
                                      **ref_kw))
  if kw.get('bn_policy') == 'local':
    # FedBN: each participant keeps its own BN statistics.
    _, clients_after, _ = fast
    means = np.asarray(clients_after.local['batch_stats']['bn1']['mean'])
    seen = np.asarray(clients_after.rounds) > 0
    assert len({m.tobytes() for m in means[seen]}) == int(seen.sum())


@pytest.mark.slow
def test_eight_devices_equal_one():
  data = _client_data()
  model, alg, server, clients = _setup('scaffold', data)
  one = _fast_rounds(model, alg, data, server, clients)
  mesh = sharding.make_mesh(8)  # 3 clients on 8 devices: 5 idle slots.
  data, server, clients = sharding.put_replicated(mesh,
                                                  (data, server, clients))
  eight = _fast_rounds(model, alg, data, server, clients, mesh=mesh)
  one_np = (*jax.tree.map(np.asarray, one[:2]),
            {k: np.asarray(v) for k, v in one[2].items()})
  _check_same(eight, one_np)
  assert eight[0].weights.params['head']['kernel'].sharding.is_fully_replicated


@pytest.mark.slow
def test_zero_weight_regularisers_are_exactly_fedavg():
  data = _client_data()
  model, avg, server, clients = _setup('fedavg', data)
  want, _, _ = _fast_rounds(model, avg, data, server, clients)
  for name, hparams in (('fedsign', {'gamma': 0.0}), ('fedprox', {'mu': 0.0})):
    alg = fed.build_algorithm(name, hparams)
    got, _, _ = _fast_rounds(model, alg, data, server, clients)
    jax.tree.map(np.testing.assert_array_equal, got.weights, want.weights)


@pytest.mark.slow
def test_one_client_equals_plain_training():
  counts = np.array([10])  # Batches of 4, 4 and a kept partial batch of 2.
  data = _client_data(counts)
  model, alg, server, clients = _setup('fedavg', data)
  got, _, metrics = _fast_rounds(model, alg, data, server, clients, rounds=1,
                                 fraction=1.0)

  tx, _ = fed.client_optimizer(OPTIM)
  step = jax.jit(steps.make_train_step(model, tx, (0.0,), (1.0,), False))
  state = steps.init_state({'params': server.weights.params,
                            'batch_stats': server.weights.batch_stats}, tx)
  key = local.client_key(SETTING['seed'], 0, 0)
  x, y = np.asarray(data.x[0]), np.asarray(data.y[0])
  for e in range(SETTING['local_epochs']):
    order = np.asarray(local.epoch_order(local.order_key(key, e), 10, 10,
                                         12))[:10]
    assert sorted(order.tolist()) == list(range(10))
    for j in range(0, 10, 4):
      pos = order[j:j + 4]
      state, _ = step(state, x[pos], y[pos], jax.random.key(0))
  _close(got.weights.params, state.params)
  _close(got.weights.batch_stats, state.batch_stats)
  assert float(metrics['steps']) == 2 * 3


@pytest.mark.slow
def test_clients_take_their_own_number_of_steps():
  data = _client_data()
  model, alg, server, clients = _setup('fedavg', data)
  round_fn = fed.make_round(model, alg, data, optim=OPTIM, fraction=1.0,
                            local_epochs=3, batch_size=4, seed=0)
  server, clients, m = round_fn(server, clients, 0)
  # Mean over the six clients of 3·⌈n/4⌉ = 9, 6, 9, 3, 6, 9.
  np.testing.assert_allclose(float(m['steps']), 42 / 6)
  round_fn(server, clients, 1)
  assert round_fn.jitted._cache_size() == 1  # One compile for all rounds.


@pytest.mark.slow
def test_states_round_trip_through_orbax(tmp_path):
  data = _client_data()
  model, alg, server, clients = _setup('moon', data, bn_policy='local')
  server, clients, _ = _fast_rounds(model, alg, data, server, clients, 1)
  with ocp.StandardCheckpointer() as ckpt:
    ckpt.save(tmp_path / 'state', {'server': server, 'clients': clients})
    ckpt.wait_until_finished()
    target = jax.tree.map(ocp.utils.to_shape_dtype_struct,
                          {'server': server, 'clients': clients})
    back = ckpt.restore(tmp_path / 'state', target)
  jax.tree.map(np.testing.assert_array_equal, back['server'], server)
  jax.tree.map(np.testing.assert_array_equal, back['clients'], clients)
  assert isinstance(back['server'], fed.ServerState)


def test_fedpan_options_reach_the_model():
  alg = fed.build_algorithm('fedpan', {'amplitude': 0.2, 'periods': 1.0})
  model = models.build_model('mlp', 4, hidden=(8,), **alg.model_kwargs)
  assert (model.pan_amplitude, model.pan_periods) == (0.2, 1.0)


@pytest.mark.parametrize('key,value,field', [
    ('fraction', 0.0, 'config.fed.fraction'),
    ('fraction', 1.5, 'config.fed.fraction'),
    ('batch_size', 0, 'config.fed.batch_size'),
    ('local_epochs', 0, 'config.fed.local_epochs'),
    ('chunk', 0, 'config.fed.chunk'),
    ('aggregation', 'median', 'config.fed.aggregation'),
    ('bn_policy', 'fedbn', 'config.fed.bn_policy'),
    ('bn_first', 'global', 'config.fed.bn_first'),
    ('optim', fed.SGD(name='lamb'), 'config.optim.name'),
    ('optim', fed.SGD(lr=-1.0), 'config.optim.lr'),
])
def test_bad_round_config_names_the_field(key, value, field):
  data = _client_data()
  model, alg, _, _ = _setup('fedavg', data)
  args = {**SETTING, 'optim': OPTIM, key: value}
  with pytest.raises(ValueError, match=field.replace('.', r'\.')):
    fed.make_round(model, alg, data, **args)


def test_client_data_checks_its_shapes():
  with pytest.raises(ValueError, match='counts'):
    fed.ClientData.from_arrays(np.zeros((2, 3, 1)), np.zeros((2, 3)),
                               np.array([3, 4]))


def test_recalibrate_recomputes_bn_statistics():
  data = _client_data()
  model, _, server, _ = _setup('fedavg', data)
  x_SB = jnp.asarray(np.random.default_rng(0).normal(
      3.0, 1.0, (2, 16, 6)).astype(np.float32))
  w = fed.recalibrate(model, server.weights, x_SB)
  h = x_SB.reshape(32, 6) @ server.weights.params['dense1']['kernel'] + (
      server.weights.params['dense1']['bias'])
  _close(w.batch_stats['bn1']['mean'], h.mean(0), 1e-4)
  _close(w.params, server.weights.params, 0)


def test_aggregation_weights_by_hand():
  active = jnp.array([True, True, False, True])
  counts = jnp.array([10, 30, 99, 60])
  np.testing.assert_allclose(
      fed.rounds.aggregation_weights(active, counts, 'weighted'),
      [0.1, 0.3, 0.0, 0.6], rtol=1e-6)
  np.testing.assert_allclose(
      fed.rounds.aggregation_weights(active, counts, 'uniform'),
      [1 / 3, 1 / 3, 0.0, 1 / 3], rtol=1e-6)
