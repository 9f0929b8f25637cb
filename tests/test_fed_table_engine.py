"""The table engine of fed/rounds.py: traced seeds and hyperparameters,
runs side by side, client grouping by step count."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import (FED_HPARAMS as HPARAMS, FED_OPTIM as OPTIM,
                      FED_SETTING as SETTING, fed_client_data as _client_data,
                      fed_close as _close, fed_setup as _setup)

from valley_jax import fed
from valley_jax.fed import rounds


def _rounds(round_fn, server, clients, n=2, **kw):
  for t in range(n):
    server, clients, m = round_fn(server, clients, t, **kw)
  return server, clients, m


@pytest.mark.parametrize('name', ['fedsign', 'feddyn'])
def test_traced_hyperparameters_give_the_rounds_of_constants(name):
  # One program with γ/α/μ/server_lr, lr, momentum, weight decay and the
  # seed as inputs; another with them baked in as constants.
  data = _client_data()
  model, alg, server, clients = _setup(name, data, bn=name != 'fedsign')
  kw = dict(optim=OPTIM, **SETTING)
  traced = fed.make_round(model, alg, data, **kw)
  const = fed.make_round(model, alg, data, **kw, constants=True)
  got = _rounds(traced, server, clients)
  want = _rounds(const, server, clients)
  _close(got[0], want[0], 1e-6)
  _close(got[1], want[1], 1e-6)
  np.testing.assert_array_equal(got[2]['clients'], want[2]['clients'])


def test_one_program_serves_other_seeds_and_values():
  # Another seed and γ as knobs give what a program built for them gives,
  # and the first program compiled once for both.
  data = _client_data()
  model, alg, server, clients = _setup('fedsign', data, bn=False)
  other = fed.build_algorithm('fedsign', {'gamma': 0.02})
  optim = OPTIM._replace(lr=0.03)
  kw = dict(SETTING, seed=5)
  built = fed.make_round(model, other, data, optim=optim, **kw)
  first = fed.make_round(model, alg, data, optim=OPTIM, **SETTING)
  _rounds(first, server, clients, 1)
  got = _rounds(first, server, clients, kn=rounds.knobs(other, optim, 5))
  want = _rounds(built, server, clients)
  jax.tree.map(np.testing.assert_array_equal, got[0], want[0])
  assert first.jitted._cache_size() == 1


def test_runs_side_by_side_equal_runs_alone():
  # Two runs (seeds 1 and 4, γ 0.1 and 0.01, other data of one shape)
  # vmapped on a run axis give each run's own rounds.
  data = [_client_data(seed=0), _client_data(seed=1)]
  model, alg, server, clients = _setup('fedsign', data[0], bn=False)
  round_fn = fed.make_round(model, alg, data[0], optim=OPTIM, **SETTING)
  algs = [alg, fed.build_algorithm('fedsign', {'gamma': 0.01})]
  kn = [rounds.knobs(a, OPTIM, s) for a, s in zip(algs, (1, 4))]
  alone = [_rounds(round_fn, server, clients, kn=k, data_override=d)
           for k, d in zip(kn, data)]
  stack = lambda *t: jax.tree.map(lambda *a: jnp.stack(a), *t)  # noqa: E731
  s, c = stack(server, server), stack(clients, clients)
  for t in range(2):
    s, c, m = round_fn.many(s, c, t, stack(*data), stack(*kn))
  for i, (s1, c1, m1) in enumerate(alone):
    _close(jax.tree.map(lambda a, i=i: a[i], s), s1, 1e-6)
    _close(jax.tree.map(lambda a, i=i: a[i], c), c1, 1e-6)
    np.testing.assert_array_equal(m['clients'][i], m1['clients'])
  assert round_fn.many_jitted._cache_size() == 1


def test_grouping_loses_no_step_and_keeps_the_slot_order():
  # Clients of 9, 5, 12, 3, 7, 12 rows, all sampled, two side by side
  # (lax.map chunks): grouped by size, the chunks are {3, 5}, {7, 9},
  # {12, 12}; every client still takes E·⌈n/B⌉ steps, the average sums
  # in slot order, so the round equals the ungrouped one.
  data = _client_data()
  model, alg, server, clients = _setup('fedavg', data)
  kw = dict(SETTING, fraction=1.0)
  grouped = fed.make_round(model, alg, data, optim=OPTIM, chunk=2, **kw)
  plain = fed.make_round(model, alg, data, optim=OPTIM, chunk=2,
                         group=False, **kw)
  g = _rounds(grouped, server, clients, 1)
  p = _rounds(plain, server, clients, 1)
  _close(g[0], p[0], 1e-6)
  _close(g[1], p[1], 1e-6)
  want = sum(2 * -(-n // 4) for n in (9, 5, 12, 3, 7, 12))
  assert int(g[2]['real_steps']) == int(p[2]['real_steps']) == want
  np.testing.assert_array_equal(g[2]['clients'], p[2]['clients'])
  # Steps computed per chunk: sorted steps 2,4 | 4,6 | 6,6 -> maxima 4, 6, 6.
  assert np.asarray(g[2]['chunk_steps']).tolist() == [[4, 6, 6]]
  np.testing.assert_array_equal(
      rounds.group_order(data.counts, jnp.ones(6, bool)), [3, 1, 4, 0, 2, 5])


def test_a_client_takes_its_own_steps_whatever_the_padding():
  # The same clients padded to 12 or 40 rows train to the same weights.
  data = _client_data()
  wide = fed.ClientData.from_arrays(
      np.pad(np.asarray(data.x), [(0, 0), (0, 28), (0, 0)]),
      np.pad(np.asarray(data.y), [(0, 0), (0, 28)]), np.asarray(data.counts))
  model, alg, server, clients = _setup(
      'fedprox', data)
  a = _rounds(fed.make_round(model, alg, data, optim=OPTIM, **SETTING),
              server, clients)
  b = _rounds(fed.make_round(model, alg, wide, optim=OPTIM, **SETTING),
              server, clients)
  _close(a[0], b[0], 1e-6)
  assert float(a[2]['steps']) == float(b[2]['steps'])
  assert HPARAMS['fedprox'] == {'mu': 0.1}
