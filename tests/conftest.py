"""Gives JAX 8 fake CPU devices before it starts, so sharded code is tested;
and the helpers that several test files share."""

import json
import os
import shutil
import socket
import subprocess
import tempfile
import time

# XLA's CPU backend optimisation level 0: the tests' tiny models spend most
# of their time compiling, and level 0 compiles about 1.8x faster (one
# resume test: 28 s of CPU -> 16 s). The mains the tests launch inherit it.
os.environ['XLA_FLAGS'] = (os.environ.get('XLA_FLAGS', '') +
                           ' --xla_force_host_platform_device_count=8'
                           ' --xla_backend_optimization_level=0')
os.environ.setdefault('JAX_PLATFORMS', 'cpu')
# Tests (and the mains they launch) never write the user's JAX compilation
# cache (valley_jax/compile_cache.py). They share one of their own, made by
# the first process (pytest, or xdist's controller, whose workers inherit
# the variable) and removed at its end: the many tiny runs the tests train
# compile the same programs, and the CI budget is 10 minutes on 2 cores.
if compile_cache_env := not os.environ.get('VALLEY_JAX_COMPILE_CACHE'):
  os.environ['VALLEY_JAX_COMPILE_CACHE'] = tempfile.mkdtemp(
      prefix='valley_jax_test_jit_')
if os.environ['VALLEY_JAX_COMPILE_CACHE'].lower() not in ('', 'none'):
  os.environ.setdefault('JAX_COMPILATION_CACHE_DIR',
                        os.environ['VALLEY_JAX_COMPILE_CACHE'])
os.environ.setdefault('JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS', '0.05')

import jax  # pylint: disable=g-import-not-at-top,wrong-import-position
import jax.numpy as jnp
import numpy as np
import pytest  # pylint: disable=g-import-not-at-top,wrong-import-position

from valley_jax import defaults, fed, models
from valley_jax.data import partition


def pytest_sessionfinish(session):
  """The process that made the shared compilation cache removes it."""
  del session
  if compile_cache_env and not os.environ.get('PYTEST_XDIST_WORKER'):
    shutil.rmtree(os.environ['VALLEY_JAX_COMPILE_CACHE'], ignore_errors=True)


@pytest.fixture(scope='session', autouse=True)
def _eight_devices():
  assert jax.device_count() == 8, 'conftest must run before JAX starts'


# ------------------------------------------------------------ training runs


def tiny_train_config(model: str = 'mlp', epochs: int = 3, bn: bool = True):
  """A seconds-long digits run used by many tests."""
  c = defaults.train_config(model, 'digits')
  c.model.width = 0.125
  c.model.bn = bn
  c.data.augment = False
  c.data.n_train = 512
  c.optim.lr = 0.05
  c.train.epochs = epochs
  c.train.batch_size = 64
  c.train.eval_batch_size = 120
  c.train.keep_epochs = (1, 2)
  return c


def half_train_config(half=None, seed=0, init_from='', epochs=2):
  """A tiny run on one half of the data (soups), keeping epoch 1."""
  c = tiny_train_config(epochs=epochs)
  c.train.keep_epochs = (1,)
  c.data.half, c.seed, c.train.init_from = half, seed, init_from
  return c


@pytest.fixture(scope='session')
def trained_mlp(tmp_path_factory):
  """A tiny digits MLP with BN, trained once for the whole session."""
  from valley_jax.train import runner  # pylint: disable=g-import-not-at-top
  workdir = str(tmp_path_factory.mktemp('mlp_run'))
  runner.run(tiny_train_config(epochs=3), workdir)
  return workdir


@pytest.fixture(scope='session')
def run2(tmp_path_factory):
  """A 2-epoch digits MLP; tests copy it before damaging it."""
  from valley_jax.train import runner  # pylint: disable=g-import-not-at-top
  w = str(tmp_path_factory.mktemp('run2'))
  runner.run(tiny_train_config(epochs=2), w)
  return w


# ------------------------------------------------------- several processes

_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def free_port() -> int:
  """A free TCP port on localhost (for a coordinator)."""
  with socket.socket() as s:
    s.bind(('localhost', 0))
    return s.getsockname()[1]


def launch_two(argv_of, cwd, timeout_s: float = 300) -> None:
  """Runs argv_of(process_id) as two processes of one run; both must pass."""
  env = {**os.environ, 'JAX_PLATFORMS': 'cpu',
         'XLA_FLAGS': '--xla_force_host_platform_device_count=2 '
                      '--xla_backend_optimization_level=0',
         'PYTHONPATH': os.pathsep.join(
             [_REPO, *filter(None, [os.environ.get('PYTHONPATH')])])}
  # Logs go to files: a full pipe of one process would stall both.
  logs = [cwd / f'process{i}.log' for i in range(2)]
  procs = []
  for i, log in enumerate(logs):
    with open(log, 'w') as f:
      procs.append(subprocess.Popen(argv_of(i), cwd=cwd, env=env, stdout=f,
                                    stderr=subprocess.STDOUT))
  try:
    for p in procs:
      p.wait(timeout=timeout_s)
  finally:
    for p in procs:
      if p.poll() is None:
        p.kill()
  for p, log in zip(procs, logs):
    assert p.returncode == 0, log.read_text()[-3000:]


# ------------------------------------------------------------ gs:// storage


@pytest.fixture(scope='session')
def gcs_emulator():
  """A local GCS emulator for the session (tests/gcs.py); skipped, saying
  what to install, where the `test` extra's gcsfs and emulator are absent."""
  import gcs  # pylint: disable=g-import-not-at-top
  if why := gcs.missing():
    pytest.skip(why)
  emulator = gcs.Emulator()
  yield emulator
  emulator.stop()


@pytest.fixture
def gcs_dir(gcs_emulator, request):
  """A fresh gs:// folder on the emulator for one test."""
  import gcs  # pylint: disable=g-import-not-at-top
  del gcs_emulator
  name = request.node.name.replace('[', '-').replace(']', '')
  return f'gs://{gcs.BUCKET}/{name}-{os.getpid()}-{time.time_ns()}'


# ------------------------------------------------------------------ probing


def small_probe_config(checkpoint_dir, kind):
  """A probe config of `kind`: 5 points, small recalibration and batches."""
  c = defaults.probe_config(checkpoint_dir)
  c.kind = kind
  c.sweep.num_points = 5
  c.sweep.recal_samples = 200
  c.sweep.recal_batch_size = 200
  c.sweep.eval_batch_size = 360
  return c


def kinds_probe_config(checkpoint_dir, kind):
  """small_probe_config with 2 noises, 1 scale, 3 ratios, 3 groups and a
  3x3 surface."""
  c = small_probe_config(checkpoint_dir, kind)
  c.noise_types.noises = ('gaussian', 'binary')
  c.noise_types.scales = (1.0,)
  c.sign_ratio.ratios = (0.0, 0.5, 1.0)
  c.groups.groups = ('ALL', 'CLF', 'BN')
  c.surface.num_points = 3
  return c


def tensorboard_scalars(workdir) -> dict[str, list[tuple[int, float]]]:
  """Every scalar series of a run folder as TensorBoard reads it (where a
  resumed run restarted, the older files' later steps purged)."""
  accumulator = pytest.importorskip(
      'tensorboard.backend.event_processing.event_accumulator',
      reason='tensorboard (the test extra) reads the event files')
  acc = accumulator.EventAccumulator(str(workdir), size_guidance={
      accumulator.SCALARS: 0})
  acc.Reload()
  return {tag: [(e.step, e.value) for e in acc.Scalars(tag)]
          for tag in acc.Tags()['scalars']}


def load_json(path):
  """A results file, read with the json module."""
  with open(path) as f:
    return json.load(f)


CURVE_KEYS = {'label', 'direction', 'sign_consistent', 'ratio', 'scale',
              'normalization', 'group', 'seeds', 'lambdas', 'loss', 'error'}


def check_curve_schema(res, kind):
  """The keys every probe result and each of its curves has."""
  assert res['kind'] == kind
  assert {'model', 'dataset', 'checkpoint', 'config', 'curves'} <= set(res)
  for c in res['curves']:
    assert CURVE_KEYS <= set(c), CURVE_KEYS - set(c)
    assert len(c['loss']) == len(c['error']) == len(c['lambdas'])


def patch_study_run(monkeypatch, kind: str, run) -> None:
  """Replaces the `run` of one registered probe study for one test."""
  import dataclasses  # pylint: disable=g-import-not-at-top

  from valley_jax.probe import registry  # pylint: disable=g-import-not-at-top
  monkeypatch.setitem(registry.STUDIES, kind, dataclasses.replace(
      registry.STUDIES[kind], run=run))


# ------------------------------------------------------- parameter pytrees


def random_theta():
  """A conv kernel, a dense kernel and a bias of standard normal values."""
  k1, k2, k3 = jax.random.split(jax.random.key(42), 3)
  return {'conv': {'kernel': jax.random.normal(k1, (3, 3, 4, 8))},
          'dense': {'kernel': jax.random.normal(k2, (50, 20)),
                    'bias': jax.random.normal(k3, (20,))}}


def flat(t):
  """All leaves of a pytree, raveled into one numpy vector."""
  return np.concatenate([np.ravel(x) for x in jax.tree.leaves(t)])


IMAGE = (8, 8, 3)


def init_model(model, shape=IMAGE):
  """Variables of `model` and the batch of 2 random inputs they came from."""
  x = jax.random.normal(jax.random.key(1), (2, *shape))
  return model.init(jax.random.key(0), x, train=False), x


# ---------------------------------------------------------------- federated

# 10 classes of 100 samples: N = 1000.
PARTITION_LABELS = np.repeat(np.arange(10), 100)


def dirichlet_parts(alpha, seed=0, labels=PARTITION_LABELS, k=10,
                    min_size=10):
  """A Dirichlet partition of `labels` over `k` clients."""
  return partition.partition(labels, k, method='dirichlet', alpha=alpha,
                             seed=seed, min_size=min_size)


FED_OPTIM = fed.SGD(lr=0.05, momentum=0.9, weight_decay=5e-4)
FED_COUNTS = np.array([9, 5, 12, 3, 7, 12])  # Partial last batches of 1, 3.
FED_SETTING = {'fraction': 0.5, 'local_epochs': 2, 'batch_size': 4,
               'seed': 1}
FED_HPARAMS = {'fedavg': None, 'fedprox': {'mu': 0.1},
               'fedsign': {'gamma': 0.1}, 'moon': {'mu': 1.0, 'proj_dim': 8},
               'feddyn': {'alpha': 0.1}, 'scaffold': None, 'fedpan': None}


def fed_client_data(counts=FED_COUNTS, dim=6, seed=0):
  """Random clients of `counts` rows each (4 classes), zero-padded."""
  rng = np.random.default_rng(seed)
  k, m = len(counts), int(max(counts))
  x = rng.normal(size=(k, m, dim)).astype(np.float32)
  y = rng.integers(0, 4, (k, m)).astype(np.int32)
  rows = np.arange(m)[None, :] < np.asarray(counts)[:, None]
  return fed.ClientData.from_arrays(x * rows[..., None], y * rows, counts)


def fed_setup(name, data, bn_policy='average', bn=True):
  """A 6-8-4 MLP, algorithm `name`, its initial server and client states."""
  alg = fed.build_algorithm(name, FED_HPARAMS[name])
  model = models.build_model('mlp', 4, hidden=(8,), bn=bn,
                             **alg.model_kwargs)
  v = model.init(jax.random.key(0), jnp.zeros((1, 6)))
  server, clients = fed.init_states(alg, model, v, data.num_clients,
                                    input_shape=(6,), key=jax.random.key(1),
                                    bn_policy=bn_policy)
  return model, alg, server, clients


def fed_close(a, b, tol=1e-5):
  """Two pytrees equal to `tol` (relative and absolute)."""
  jax.tree.map(lambda u, v: np.testing.assert_allclose(
      np.asarray(u), np.asarray(v), rtol=tol, atol=tol), a, b)


def plain_loss_error(model, params, x, y) -> tuple[float, float]:
  """Mean CE loss and error of a model without BN, by plain NumPy (float64
  softmax): the oracle the probe's sweeps are checked against."""
  logits = np.asarray(model.apply({'params': params}, x, train=False),
                      np.float64)
  logp = logits - logits.max(1, keepdims=True)
  logp -= np.log(np.exp(logp).sum(1, keepdims=True))
  return (float(-logp[np.arange(len(y)), y].mean()),
          float(np.mean(logits.argmax(1) != y)))

def bootstrap_by_hand(x_SxN, n_boot=2000, seed=0):
  """A hierarchical bootstrap of the mean, written as plainly as possible:
  per replicate, resample seeds, then examples (one index set for every
  seed), average."""
  rng = np.random.default_rng(seed)
  s, n = x_SxN.shape
  reps = []
  for _ in range(n_boot):
    seeds = rng.integers(0, s, s)
    examples = rng.integers(0, n, n)
    reps.append(np.mean([x_SxN[i, examples].mean() for i in seeds]))
  return np.percentile(reps, [2.5, 97.5])
