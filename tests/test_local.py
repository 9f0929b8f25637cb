"""fed/local.py: the model's features and masked BatchNorm, padded and
masked local steps, the client optimiser."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from conftest import (FED_OPTIM as OPTIM, IMAGE as _IMAGE,
                      fed_client_data as _client_data, fed_close as _close,
                      fed_setup as _setup, init_model as _init)

from valley_jax import fed, models
from valley_jax.fed import local


_TINY = {'vit': {'depth': 1, 'dim': 16, 'heads': 2}}


# One model per architecture (VGG and AlexNet share the classifier code).
@pytest.mark.parametrize('name', ['mlp', *[
    pytest.param(n, marks=pytest.mark.slow)
    for n in ('cnn', 'resnet20', 'vit')]])
def test_features_are_the_input_of_the_head(name):
  model = models.build_model(name, 7, width=0.0625, **_TINY.get(name, {}))
  v, x = _init(model)
  logits, _, feats = fed.apply_model(model, v['params'],
                                     v.get('batch_stats', {}), x,
                                     train=False, features=True)
  head = v['params']['head']
  np.testing.assert_allclose(feats @ head['kernel'] + head['bias'], logits,
                             rtol=1e-5, atol=1e-5)
  np.testing.assert_array_equal(logits, model.apply(v, x, train=False))
  assert fed.feature_dim(model, _IMAGE) == head['kernel'].shape[0]


def test_masked_batch_norm_uses_real_rows_only():
  model = models.build_model('mlp', 3, hidden=(4,), bn=True)
  v, x = _init(model, (5,))
  padded = jnp.concatenate([x, 100.0 * jnp.ones((3, 5))])
  mask = jnp.array([True, True, False, False, False])
  got, stats, _ = fed.apply_model(model, v['params'], v['batch_stats'],
                                  padded, train=True, mask_B=mask)
  want, want_stats, _ = fed.apply_model(model, v['params'], v['batch_stats'],
                                        x, train=True)
  np.testing.assert_allclose(got[:2], want, rtol=1e-5, atol=1e-6)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5),
               stats, want_stats)


def test_model_without_features_has_no_representation():
  class Bare(nn.Module):
    @nn.compact
    def __call__(self, x, train=False):
      return nn.Dense(2, name='head')(x)

  with pytest.raises(ValueError, match='representation'):
    fed.feature_dim(Bare(), (3,))


def _local_result(counts, n_max, count):
  """One client's local training in data padded to n_max rows."""
  data = _client_data(counts)
  model, alg, server, _ = _setup('scaffold', data)
  tx, lr = fed.client_optimizer(OPTIM)
  step = local.make_local_step(model, alg, tx)
  train = local.make_local_train(step, epochs=2, batch_size=4, n_max=n_max)
  start = server.weights
  ctx = fed.LocalContext(start, server.aux, alg.init_client(start),
                         jnp.bool_(True), lr, local.make_features_fn(model))
  x, y = data.x[0][:n_max], data.y[0][:n_max]
  return start, jax.jit(train, static_argnums=6)(
      start, ctx, x, y, count, jax.random.key(3), tx)


@pytest.mark.slow
def test_masked_padded_steps_are_the_identity():
  # A client of 5 rows padded to 12 (2 of its 3 steps per epoch are partial
  # or masked) trains exactly as in a block of 5 rows, with 2·⌈5/4⌉ steps.
  start, (w5, steps5, loss5) = _local_result(np.array([5, 12]), 5, 5)
  _, (w12, steps12, loss12) = _local_result(np.array([5, 12]), 12, 5)
  assert int(steps5) == int(steps12) == 4
  _close(w5, w12, 1e-6)
  np.testing.assert_allclose(loss5, loss12, rtol=1e-6)
  # No real rows: every step is masked and nothing moves.
  _, (w0, steps0, loss0) = _local_result(np.array([5, 12]), 12, 0)
  assert int(steps0) == 0 and float(loss0) == 0.0
  jax.tree.map(np.testing.assert_array_equal, w0, start)


def test_client_optimizer_is_torch_sgd():
  tx, lr = fed.client_optimizer(OPTIM)
  p = {'w': jnp.array([1.0, -2.0])}
  g = {'w': jnp.array([0.5, 0.5])}
  s = tx.init(p)
  u1, s = tx.update(g, s, p)
  p1 = optax.apply_updates(p, u1)
  u2, _ = tx.update(g, s, p1)
  v1 = np.array([0.5, 0.5]) + 5e-4 * np.array([1.0, -2.0])
  np.testing.assert_allclose(u1['w'], -lr * v1, rtol=1e-6)
  v2 = np.array([0.5, 0.5]) + 5e-4 * np.asarray(p1['w'])
  np.testing.assert_allclose(u2['w'], -lr * (v2 + 0.9 * v1), rtol=1e-6)


def test_fedbn_start_and_kept_part_by_hand():
  """FedBN: a client keeps the leaves of modules named bn* and every running
  statistic; its first round starts from the global BN, later ones from its
  own. Values by hand: global leaves are 1, the client's own are 2."""
  from valley_jax.fed import algorithm  # pylint: disable=g-import-not-at-top
  ones = lambda *s: jnp.ones(s)  # pylint: disable=unnecessary-lambda-assignment
  glob = algorithm.Weights(
      params={'conv': {'kernel': ones(3, 2)},
              'bn1': {'scale': ones(2), 'bias': ones(2)},
              'block': {'bn2': {'scale': ones(2)}, 'dense': {'bias': ones(2)}}},
      batch_stats={'bn1': {'mean': ones(2), 'var': ones(2)},
                   'block': {'bn2': {'mean': ones(2)}}}, extra={})
  part = local.bn_part(glob)
  assert jax.tree.structure(part['params']) == jax.tree.structure(
      {'bn1': {'bias': 0, 'scale': 0}, 'block': {'bn2': {'scale': 0}}})
  assert part['batch_stats'] is glob.batch_stats
  own = jax.tree.map(lambda a: 2 * a, part)
  # 'init': always the client's own BN (its initial one until it trains);
  # 'average': the server's in its first participation.
  for rounds, first, want in ((0, 'average', 1.0), (3, 'average', 2.0),
                              (0, 'init', 2.0), (3, 'init', 2.0)):
    state = algorithm.ClientState(aux={}, local=own,
                                  rounds=jnp.asarray(rounds, jnp.int32))
    got = local.start_weights(glob, state, 'local', first)
    for leaf in (got.params['bn1']['scale'], got.params['bn1']['bias'],
                 got.params['block']['bn2']['scale'],
                 got.batch_stats['bn1']['var'],
                 got.batch_stats['block']['bn2']['mean']):
      np.testing.assert_array_equal(leaf, want)
    np.testing.assert_array_equal(got.params['conv']['kernel'], 1.0)
    np.testing.assert_array_equal(got.params['block']['dense']['bias'], 1.0)
  assert local.start_weights(glob, state, 'global') is glob
