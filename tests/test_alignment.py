"""fed/alignment.py (experimental): a known permutation of the server's
units undone; the engine's aligned round equals the reference's."""

import jax
import numpy as np
import pytest
from conftest import (FED_OPTIM as OPTIM, FED_SETTING as SETTING,
                      fed_client_data, fed_close, fed_setup)

from valley_jax import fed
from valley_jax.core import permute
from valley_jax.errors import InputError
from valley_jax.fed import alignment


def test_a_permuted_client_is_aligned_back_to_the_server():
  data = fed_client_data()
  model, _, server, _ = fed_setup('fedavg', data)
  w = server.weights
  s = permute.spec(model, w.params)
  v = permute.permute(s, {'params': w.params, 'batch_stats': w.batch_stats},
                      permute.random_perms(s, 0))
  client = fed.Weights(v['params'], v['batch_stats'], w.extra)
  back = alignment.align_weights(model, w, client)
  fed_close(back.params, w.params, tol=0)
  fed_close(back.batch_stats, w.batch_stats, tol=0)
  # The jitted callback: slot 0 active (aligned), slot 1 idle (as it is).
  stack = jax.tree.map(lambda a: np.stack([a, a]), client)
  out = jax.jit(alignment.make_aligner(model))(w, stack,
                                               np.array([True, False]))
  fed_close(jax.tree.map(lambda a: a[0], out.params), w.params, tol=0)
  fed_close(jax.tree.map(lambda a: a[1], out.params), client.params, tol=0)


@pytest.mark.slow
def test_aligned_round_equals_the_reference():
  data = fed_client_data()
  model, alg, server, clients = fed_setup('fedprox', data)
  out = []
  for make in (fed.make_round, fed.make_reference_round):
    round_fn = make(model, alg, data, optim=OPTIM, align=True, **SETTING)
    s, c = server, clients
    s, c, _ = round_fn(s, c, 0)
    out.append((s, c))
  fed_close(out[0][0], out[1][0])
  fed_close(out[0][1], out[1][1])


@pytest.mark.parametrize('name,policy,match', [
    ('scaffold', 'average', 'not .scaffold.'),
    ('fedavg', 'local', 'bn_policy'),
])
def test_unsupported_settings_are_refused(name, policy, match):
  with pytest.raises(InputError, match=match):
    alignment.check(name, policy)
