"""Each algorithm's round against a plain numpy computation on tiny models;
the docstring examples of the fed modules."""

import doctest
import importlib

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from valley_jax import fed, models
from valley_jax.fed import fedsign, local

LR, MOM, WD = 0.1, 0.9, 0.01
OPTIM = fed.SGD(lr=LR, momentum=MOM, weight_decay=WD)
SEED, B = 3, 4
COUNTS = np.array([6, 5])


class Linear(nn.Module):
  """logits = x W + b; its representation is its input."""

  @nn.compact
  def __call__(self, x, train=False):
    del train
    self.sow('intermediates', 'features', x)
    return nn.Dense(3, name='head')(x)


def _data(d=3):
  rng = np.random.default_rng(0)
  x = rng.normal(size=(2, 6, d)).astype(np.float32)
  y = rng.integers(0, 3, (2, 6)).astype(np.int32)
  return fed.ClientData.from_arrays(x, y, COUNTS)


def _order(k, n, n_max=6):
  key = local.order_key(local.client_key(SEED, 0, k), 0)
  length = local.steps_per_epoch(n_max, B) * B
  return np.asarray(local.epoch_order(key, n, n_max, length))[:n]


def _softmax(z):
  e = np.exp(z - z.max(-1, keepdims=True))
  return e / e.sum(-1, keepdims=True)


def _ce_grads(p, x, y):
  """Gradient of the mean CE of the linear model, by hand."""
  g = (_softmax(x @ p['kernel'] + p['bias']) - np.eye(3)[y]) / len(y)
  return {'kernel': x.T @ g, 'bias': g.sum(0)}


def _hand_client(p0, x, y, order, extra_grad, correction=None):
  """One epoch of momentum SGD with torch-style weight decay, by hand."""
  p = {k: v.astype(np.float64) for k, v in p0.items()}
  m = {k: np.zeros_like(v) for k, v in p.items()}
  for j in range(0, len(order), B):
    pos = order[j:j + B]
    g = _ce_grads(p, x[pos].astype(np.float64), y[pos])
    eg = extra_grad(p)
    for k, v in p.items():
      m[k] = g[k] + eg[k] + WD * v + MOM * m[k]
      p[k] = v - LR * m[k] - (LR * correction[k] if correction else 0)
  return p


def _np(tree):
  return jax.tree.map(lambda a: np.asarray(a, np.float64), tree)


def _setup(name, hparams, model=None, input_shape=(3,)):
  model = model or Linear()
  v = model.init(jax.random.key(1), jnp.zeros((1, *input_shape)))
  alg = fed.build_algorithm(name, hparams)
  server, clients = fed.init_states(alg, model, v, 2, input_shape=input_shape,
                                    key=jax.random.key(2))
  return model, alg, server, clients


def _round(model, alg, server, clients, data, fraction=1.0):
  round_fn = fed.make_round(model, alg, data, optim=OPTIM, fraction=fraction,
                            local_epochs=1, batch_size=B, seed=SEED)
  return round_fn(server, clients, 0)


def _random_like(tree, seed):
  rng = np.random.default_rng(seed)
  return jax.tree.map(
      lambda a: jnp.asarray(0.1 * rng.normal(size=a.shape), a.dtype), tree)


def _close(a, b, tol=2e-5):
  jax.tree.map(lambda u, v: np.testing.assert_allclose(u, v, rtol=tol,
                                                       atol=tol), a, b)


@pytest.mark.slow
def test_fedprox_matches_hand_steps():
  data = _data()
  model, alg, server, clients = _setup('fedprox', {'mu': 0.5})
  new, _, _ = _round(model, alg, server, clients, data)
  p0 = _np(server.weights.params['head'])
  locals_ = []
  def prox(p):
    return {n: 0.5 * (p[n] - p0[n]) for n in p}

  for k in range(2):
    locals_.append(_hand_client(p0, np.asarray(data.x[k]),
                                np.asarray(data.y[k]), _order(k, COUNTS[k]),
                                prox))
  want = {n: (locals_[0][n] + locals_[1][n]) / 2 for n in p0}
  _close(new.weights.params['head'], want)


@pytest.mark.slow
def test_scaffold_matches_hand_steps():
  data = _data()
  model, alg, server, clients = _setup('scaffold', None)
  c = _random_like(server.aux['c'], 1)
  c_K = _random_like(clients.aux['c'], 2)
  server = fed.ServerState(server.weights, {'c': c})
  clients = fed.ClientState({'c': c_K}, clients.local, clients.rounds)
  new, new_clients, _ = _round(model, alg, server, clients, data)

  p0, c0 = _np(server.weights.params['head']), _np(c['head'])
  ys, dcs = [], []
  for k in range(2):
    ck = _np(c_K['head'])
    ck = {n: v[k] for n, v in ck.items()}
    corr = {n: c0[n] - ck[n] for n in p0}
    y = _hand_client(p0, np.asarray(data.x[k]), np.asarray(data.y[k]),
                     _order(k, COUNTS[k]), lambda p: dict.fromkeys(p, 0), corr)
    steps = -(-COUNTS[k] // B)
    new_ck = {n: ck[n] - c0[n] + (p0[n] - y[n]) / (steps * LR) for n in p0}
    _close({n: v[k] for n, v in new_clients.aux['c']['head'].items()}, new_ck,
           1e-4)
    ys.append(y)
    dcs.append({n: new_ck[n] - ck[n] for n in p0})
  _close(new.weights.params['head'], {n: (ys[0][n] + ys[1][n]) / 2 for n in p0})
  _close(new.aux['c']['head'], {n: c0[n] + (dcs[0][n] + dcs[1][n]) / 2
                                for n in p0}, 1e-4)


def _client_alpha(alpha, scaling, k):
  """FedDyn's α_k by hand: α·mean_j n_j / n_k over the K = 2 clients of 6
  and 5 rows ('data_size'), or α ('none')."""
  return alpha * 5.5 / COUNTS[k] if scaling == 'data_size' else alpha


@pytest.mark.slow
@pytest.mark.parametrize('scaling', ['none', 'data_size'])
def test_feddyn_matches_hand_steps(scaling):
  data = _data()
  alpha = 0.5
  model, alg, server, clients = _setup('feddyn', {'alpha': alpha,
                                                  'alpha_scaling': scaling})
  h = _random_like(server.aux['h'], 3)
  g_K = _random_like(clients.aux['grad'], 4)
  server = fed.ServerState(server.weights, {**server.aux, 'h': h})
  clients = fed.ClientState({'grad': g_K}, clients.local, clients.rounds)
  # One of the two clients takes part: the other's state must not change,
  # and its size still counts in the mean of α_k.
  new, new_clients, metrics = _round(model, alg, server, clients, data, 0.5)
  (k,) = np.asarray(metrics['clients'])
  a_k = _client_alpha(alpha, scaling, k)

  p0, gk = _np(server.weights.params['head']), _np(g_K['head'])
  gk = {n: v[k] for n, v in gk.items()}
  def dyn(p):
    return {n: -gk[n] + a_k * (p[n] - p0[n]) for n in p}

  theta_k = _hand_client(p0, np.asarray(data.x[k]), np.asarray(data.y[k]),
                         _order(k, COUNTS[k]), dyn)
  delta = {n: theta_k[n] - p0[n] for n in p0}
  # The server step has the one α whatever the scaling.
  h_new = {n: np.asarray(h['head'][n]) - alpha / 2 * delta[n] for n in p0}
  _close(new.aux['h']['head'], h_new)
  _close(new.weights.params['head'],
         {n: theta_k[n] - h_new[n] / alpha for n in p0})
  _close(fed.global_weights(alg, new).params['head'], theta_k)
  got_g = _np(new_clients.aux['grad']['head'])
  _close({n: v[k] for n, v in got_g.items()},
         {n: gk[n] - a_k * delta[n] for n in p0})
  _close({n: v[1 - k] for n, v in got_g.items()},
         {n: np.asarray(g_K['head'][n][1 - k]) for n in p0}, 0)


@pytest.mark.slow
def test_feddyn_data_size_scales_each_clients_alpha():
  """The default scaling, two clients of 6 and 5 rows from zero states:
  client k trains with α_k = α·5.5/n_k and keeps g_k = −α_k·δ_k."""
  data = _data()
  alpha = 0.5
  model, alg, server, clients = _setup('feddyn', {'alpha': alpha})
  assert alg.hparams['alpha_scaling'] == 'data_size'
  new, new_clients, _ = _round(model, alg, server, clients, data)
  p0 = _np(server.weights.params['head'])
  got_g = _np(new_clients.aux['grad']['head'])
  deltas = []
  for k, a_k in enumerate((alpha * 5.5 / 6, alpha * 5.5 / 5)):
    def dyn(p, a_k=a_k):
      return {n: a_k * (p[n] - p0[n]) for n in p}

    theta_k = _hand_client(p0, np.asarray(data.x[k]), np.asarray(data.y[k]),
                           _order(k, COUNTS[k]), dyn)
    deltas.append({n: theta_k[n] - p0[n] for n in p0})
    _close({n: v[k] for n, v in got_g.items()},
           {n: -a_k * deltas[k][n] for n in p0})
  _close(new.aux['h']['head'], {n: -alpha / 2 * (deltas[0][n] + deltas[1][n])
                                for n in p0})


def _mlp_forward(p, x):
  """Features and logits of the registry MLP (hidden=(3,)) by hand: f =
  relu(x V + c), through the projection head when the model has one."""
  f = np.maximum(x @ p['dense1']['kernel'] + p['dense1']['bias'], 0)
  if 'projection' in p:
    f = _project(p['projection'], f)
  return f, f @ p['head']['kernel'] + p['head']['bias']


def _project(h, f):
  z = np.maximum(f @ h['dense1']['kernel'] + h['dense1']['bias'], 0)
  return z @ h['dense2']['kernel'] + h['dense2']['bias']


def _z(w, x):
  """MOON's z: the model's own projection, or its head in `extra`."""
  f = _mlp_forward(w['params'], x)[0]
  return _project(w['extra'], f) if w['extra'] else f


def _cos(a, b):
  return (a * b).sum(-1) / (np.linalg.norm(a, axis=-1) *
                            np.linalg.norm(b, axis=-1))


def _moon_loss(theta, x, y, glob, prev, mu, tau):
  """CE + μ·CE([cos(z, z_glob), cos(z, z_prev)]/τ, 0), in float64 numpy."""
  logits = _mlp_forward(theta['params'], x)[1]
  ce = -np.log(_softmax(logits)[np.arange(len(y)), y]).mean()
  z = _z(theta, x)
  zs = [_z(w, x) for w in (glob, prev)]
  logits2 = np.stack([_cos(z, zs[0]), _cos(z, zs[1])], -1) / tau
  con = -np.log(_softmax(logits2)[:, 0]).mean()
  return ce + mu * con


def _numeric_grad(fn, theta, eps=1e-6):
  leaves, treedef = jax.tree.flatten(theta)
  grads = []
  for i, leaf in enumerate(leaves):
    g = np.zeros_like(leaf)
    for idx in np.ndindex(leaf.shape):
      for sign in (1, -1):
        moved = [a.copy() for a in leaves]
        moved[i][idx] += sign * eps
        g[idx] += sign * fn(jax.tree.unflatten(treedef, moved)) / (2 * eps)
    grads.append(g)
  return jax.tree.unflatten(treedef, grads)


def _own_initial(alg, model, key, k, input_shape=(2,), dim=3):
  """Client k's own initial model by the rule rounds.init_states documents:
  k_model, k_extra = split(fold_in(key, k)); model.init(k_model) and
  init_extra(k_extra, d)."""
  k_model, k_extra = jax.random.split(jax.random.fold_in(key, k))
  v = model.init(k_model, jnp.zeros((1, *input_shape)), train=False)
  extra = alg.init_extra(k_extra, dim) if alg.init_extra else {}
  return fed.Weights(v['params'], v.get('batch_stats') or {}, extra)


def _moon_model(classifier, bn=False):
  return models.build_model('mlp', 3, hidden=(3,), bn=bn,
                            projection=2 if classifier == 'projection' else 0)


# (classifier, first_negative, round): the old MOON in round 0 with a
# client that took part before; the authors' defaults and the head in
# `extra` in round 1 with a first participant, whose negative is its own
# initial model.
@pytest.mark.slow
@pytest.mark.parametrize('classifier,first,t', [
    ('representation', 'global', 0), ('projection', 'initial', 1),
    ('representation', 'initial', 1)])
def test_moon_matches_hand_step(classifier, first, t):
  rng = np.random.default_rng(5)
  x = rng.normal(size=(1, 4, 2)).astype(np.float32)
  y = np.array([[0, 1, 2, 1]], np.int32)
  data = fed.ClientData.from_arrays(x, y, np.array([4]))
  model = _moon_model(classifier)
  v = model.init(jax.random.key(1), jnp.zeros((1, 2)))
  alg = fed.build_algorithm('moon', {'mu': 2.0, 'tau': 0.5, 'proj_dim': 2,
                                     'classifier': classifier,
                                     'first_negative': first})
  server, clients = fed.init_states(alg, model, v, 1, input_shape=(2,),
                                    key=jax.random.key(2))
  if first == 'global':
    # A client that took part before: its previous model differs from θt.
    prev = jax.tree.map(lambda a, n: a + n, server.weights,
                        _random_like(server.weights, 6))
    clients = fed.ClientState({'prev': jax.tree.map(lambda a: a[None], prev)},
                              {}, jnp.ones((1,), jnp.int32))
  else:
    assert int(clients.rounds[0]) == 0  # A first participation.
    prev = _own_initial(alg, model, jax.random.key(2), 0)
  round_fn = fed.make_round(model, alg, data, optim=OPTIM, fraction=1.0,
                            local_epochs=1, batch_size=4, seed=SEED)
  new, new_clients, _ = round_fn(server, clients, t)

  glob = _np({'params': server.weights.params, 'extra': server.weights.extra})
  prv = _np({'params': prev.params, 'extra': prev.extra})
  assert bool(glob['extra']) == (classifier == 'representation')
  xb, yb = x[0].astype(np.float64), y[0]
  grads = _numeric_grad(
      lambda t: _moon_loss(t, xb, yb, glob, prv, 2.0, 0.5), glob)
  # First step of momentum SGD: the buffer is the (decayed) gradient.
  want = jax.tree.map(lambda p, g: p - LR * (g + WD * p), glob, grads)
  _close({'params': new.weights.params, 'extra': new.weights.extra}, want,
         1e-4)
  stored = new_clients.aux['prev']
  _close(jax.tree.map(lambda a: a[0], stored.params), want['params'], 1e-4)


@pytest.mark.slow
@pytest.mark.parametrize('classifier,first', [
    ('representation', 'global'), ('projection', 'global'),
    ('projection', 'initial')])
def test_moon_first_round_is_fedavgs(classifier, first):
  # 'global': with previous = θt both logits are the same function of θ, so
  # the contrastive term has no gradient. 'initial': in round 0 there is no
  # term (each client's own initial model would give one).
  data = _data(d=2)
  model = _moon_model(classifier)
  _, alg, server, clients = _setup('moon', {
      'proj_dim': 2, 'classifier': classifier, 'first_negative': first},
                                   model, (2,))
  _, avg, s_avg, c_avg = _setup('fedavg', None, model, (2,))
  new, _, _ = _round(model, alg, server, clients, data)
  ref, _, _ = _round(model, avg, s_avg, c_avg, data)
  _close(new.weights.params, ref.weights.params, 1e-5)


@pytest.mark.parametrize('classifier,first', [
    ('projection', 'initial'), ('representation', 'initial'),
    ('projection', 'global')])
def test_moon_initial_negatives(classifier, first):
  """'initial': client k's stored previous model is its own model.init (and
  head) with the keys split from fold_in(key, k), different for every
  client and from θ0; 'global': θ0 for all."""
  model = _moon_model(classifier, bn=True)
  alg = fed.build_algorithm('moon', {'proj_dim': 2, 'classifier': classifier,
                                     'first_negative': first})
  v = model.init(jax.random.key(1), jnp.zeros((1, 2)))
  server, clients = fed.init_states(alg, model, v, 3, input_shape=(2,),
                                    key=jax.random.key(2))
  prev = clients.aux['prev']
  rows = [jax.tree.map(lambda a, k=k: a[k], prev) for k in range(3)]
  if first == 'global':
    for row in rows:
      jax.tree.map(np.testing.assert_array_equal, row, server.weights)
    return
  for k, row in enumerate(rows):
    jax.tree.map(np.testing.assert_array_equal, row,
                 _own_initial(alg, model, jax.random.key(2), k))
  kernels = [np.asarray(r.params['dense1']['kernel']) for r in rows]
  kernels.append(np.asarray(server.weights.params['dense1']['kernel']))
  assert len({a.tobytes() for a in kernels}) == 4
  if classifier == 'representation':
    heads = [np.asarray(r.extra['dense2']['kernel']) for r in rows]
    assert len({a.tobytes() for a in heads}) == 3


def test_moon_options_reach_the_model():
  alg = fed.build_algorithm('moon', {'proj_dim': 4})
  assert alg.model_kwargs == {'projection': 4} and alg.init_extra is None
  assert alg.independent_client_init
  old = fed.build_algorithm('moon', {'classifier': 'representation',
                                     'first_negative': 'global'})
  assert old.model_kwargs == {} and old.init_extra is not None
  assert not old.independent_client_init
  # A model built without the algorithm's projection head is refused.
  model = models.build_model('mlp', 3, hidden=(3,))
  v = model.init(jax.random.key(0), jnp.zeros((1, 2)))
  with pytest.raises(ValueError, match=r"moon.*projection=4"):
    fed.init_states(alg, model, v, 2, input_shape=(2,), key=jax.random.key(0))


@pytest.mark.slow
def test_moon_global_model_is_exported_with_its_projection(tmp_path):
  from valley_jax import checkpoint, defaults  # pylint: disable=g-import-not-at-top
  from valley_jax.fed import runner as fed_runner  # pylint: disable=g-import-not-at-top
  c = defaults.fed_offline('digits', 'moon,rounds1')
  c.fed.update(num_clients=4, fraction=0.5, local_epochs=1)
  c.fed.hparams.proj_dim = 8
  c.model.width = 0.125
  fed_runner.run(c, str(tmp_path))
  variables, cfg = checkpoint.restore_model(
      fed_runner.global_model_dir(str(tmp_path)))
  assert cfg['model']['kwargs']['projection'] == 8
  m = cfg['model']
  rebuilt = models.build_model(m['name'], 10, width=m['width'], bn=m['bn'],
                               bn_init=m['bn_init'], **m['kwargs'])
  want = models.abstract_variables(rebuilt, (8, 8, 1))['params']
  assert (jax.tree.map(jnp.shape, variables['params']) ==
          jax.tree.map(lambda a: a.shape, want))
  assert variables['params']['head']['kernel'].shape == (8, 10)


def test_fedsign_term_gradient_matches_finite_differences():
  with jax.enable_x64(True):
    rng = np.random.default_rng(0)
    theta = {'a': jnp.asarray(rng.normal(size=(3, 4))),
             'b': jnp.asarray(rng.normal(size=5))}
    anchor = {'a': jnp.asarray(rng.normal(size=(3, 4))),
              'b': jnp.asarray([1.0, -2.0, 0.0, 0.5, -0.1])}
    gamma = 0.1

    def term(t):
      return -gamma * fedsign.sign_reward(t, anchor)

    got = jax.grad(term)(theta)
    num = _numeric_grad(lambda t: float(term(t)), _np(theta))
    _close(got, num, 1e-7)
    # By hand: -γ·σ'(θ) where θt > 0, +γ·σ'(θ) where θt < 0, 0 where θt = 0.
    def sig(u):
      return 1 / (1 + np.exp(-u))

    hand = {k: -gamma * np.sign(np.asarray(anchor[k])) *
            sig(np.asarray(theta[k])) * (1 - sig(np.asarray(theta[k])))
            for k in theta}
    _close(got, hand, 1e-12)
    # The term's value is the paper's sum over every element.
    value = sum(np.sum(np.where(np.asarray(anchor[k]) > 0,
                                sig(np.asarray(theta[k])), 0) +
                       np.where(np.asarray(anchor[k]) < 0,
                                sig(-np.asarray(theta[k])), 0))
                for k in theta)
    np.testing.assert_allclose(float(fedsign.sign_reward(theta, anchor)),
                               value, rtol=1e-12)


def test_fedsign_reductions_by_hand():
  """R = Σ r_i ('sum'), Σ r_i / T over T = 2 tensors ('tensor_mean', the
  default, as FedRepo scales its regularisers) and Σ r_i / N over N = 4
  elements ('element_mean'). θ = 0 gives σ = ½ everywhere; θt = (1, -1, 0)
  and (2,) reward three elements and skip the one with θt = 0."""
  theta = {'a': jnp.zeros(3), 'b': jnp.zeros(1)}
  anchor = {'a': jnp.asarray([1.0, -1.0, 0.0]), 'b': jnp.asarray([2.0])}
  for reduction, want in (('sum', 1.5), ('tensor_mean', 0.75),
                          ('element_mean', 0.375)):
    assert float(fedsign.sign_reward(theta, anchor, reduction)) == want
  alg = fed.build_algorithm('fedsign', {'gamma': 0.1})
  assert alg.hparams == {'gamma': 0.1, 'reduction': 'tensor_mean'}


def test_sampling_is_seeded_without_replacement():
  s = np.asarray(fed.sample_clients(0, 7, 100, 0.1))
  assert len(s) == 10 == len(set(s.tolist())) and s.max() < 100
  np.testing.assert_array_equal(s, np.asarray(fed.sample_clients(0, 7, 100,
                                                                 0.1)))
  assert not np.array_equal(s, np.asarray(fed.sample_clients(0, 8, 100, 0.1)))
  assert len(fed.sample_clients(0, 0, 20, 0.01)) == 1
  assert fed.num_sampled(25, 0.5) == 12 and fed.num_sampled(5, 1.0) == 5


@pytest.mark.parametrize('name,hparams,field', [
    ('fedbest', None, 'config.fed.algorithm'),
    ('fedsign', {'gamma': -0.1}, 'config.fed.hparams.gamma'),
    ('fedsign', {'reduction': 'mean'}, 'config.fed.hparams.reduction'),
    ('fedprox', {'mu': -1e-3}, 'config.fed.hparams.mu'),
    ('moon', {'mu': -5}, 'config.fed.hparams.mu'),
    ('moon', {'tau': 0}, 'config.fed.hparams.tau'),
    ('moon', {'classifier': 'head'}, 'config.fed.hparams.classifier'),
    ('moon', {'first_negative': 'theta0'},
     'config.fed.hparams.first_negative'),
    ('feddyn', {'alpha_scaling': 'size'}, 'config.fed.hparams.alpha_scaling'),
    ('feddyn', {'alpha': 0}, 'config.fed.hparams.alpha'),
    ('scaffold', {'server_lr': -1}, 'config.fed.hparams.server_lr'),
    ('fedpan', {'amplitude': -0.1}, 'config.fed.hparams.amplitude'),
    ('fedavg', {'mu': 0.1}, 'config.fed.hparams'),
])
def test_bad_algorithm_config_names_the_field(name, hparams, field):
  with pytest.raises(ValueError, match=field.replace('.', r'\.')):
    fed.build_algorithm(name, hparams)


def test_moon_needs_a_representation():
  class NoFeatures(nn.Module):
    @nn.compact
    def __call__(self, x, train=False):
      return nn.Dense(3, name='head')(x)

  model = NoFeatures()
  v = model.init(jax.random.key(0), jnp.zeros((1, 3)))
  alg = fed.build_algorithm('moon')
  with pytest.raises(ValueError, match=r'config\.fed\.algorithm=.moon.*'
                     'representation'):
    fed.init_states(alg, model, v, 2, input_shape=(3,), key=jax.random.key(0))


@pytest.mark.parametrize('name', [
    pytest.param('valley_jax.fed', marks=pytest.mark.slow),
    'valley_jax.fed.fedavg', 'valley_jax.fed.fedprox',
    'valley_jax.fed.fedsign', 'valley_jax.fed.moon', 'valley_jax.fed.feddyn',
    'valley_jax.fed.scaffold', 'valley_jax.fed.fedpan',
    'valley_jax.fed.rounds', 'valley_jax.models.layers'])
def test_fed_docstring_examples(name):
  result = doctest.testmod(importlib.import_module(name),
                           optionflags=doctest.ELLIPSIS)
  assert result.attempted > 0 and result.failed == 0
