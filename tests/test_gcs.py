"""gs:// workdirs, checkpoints, weights and caches, against a GCS emulator.

The `gcs_dir` fixture (conftest.py, tests/gcs.py) gives each test a folder
on a local fake-gcs-server; without the `test` extra's gcsfs and emulator
the tests skip, saying what to install. Each test compares what lands on
gs:// with the same run on a local disk.
"""

import json
import logging
import os
import pathlib
import subprocess
import sys
import time

from etils import epath
import fsspec
import jax
import numpy as np
import pytest
from conftest import patch_study_run, tiny_train_config
import gcs

from valley_jax import checkpoint, compile_cache, convert, defaults, outputs
from valley_jax import rundir
from valley_jax.fed import runner as fed_runner
from valley_jax.probe import runner as probe_runner
from valley_jax.train import runner as train_runner


_REPO = pathlib.Path(__file__).resolve().parent.parent


def _no_compile(*a, **k):
  raise AssertionError('recomputed a finished result')


def _stray(folder: str) -> list[str]:
  """Temporary or write-test objects left under a gs:// folder."""
  return [p for p in fsspec.filesystem('gs').find(folder)
          if '.tmp-' in p or '.write-test-' in p]


def _metrics(workdir: str) -> list[dict]:
  """metrics.jsonl without its timings."""
  return [{k: v for k, v in r.items() if k != 'seconds'} for r in
          outputs.read_jsonl(epath.Path(workdir) / rundir.METRICS)]


def _errors(caplog) -> list[str]:
  return [r.getMessage()[:200] for r in caplog.records
          if r.levelno >= logging.ERROR]


@pytest.fixture(scope='module')
def local_run(tmp_path_factory):
  """The uninterrupted local run that the gs:// runs must equal."""
  workdir = str(tmp_path_factory.mktemp('local'))
  train_runner.run(tiny_train_config(epochs=3), workdir)
  return workdir


@pytest.fixture(scope='module')
def gcs_run(gcs_emulator):
  """The same run trained into gs://, "killed" after epoch 1 and resumed
  after its metrics.jsonl was lost; and the ERROR log lines on the way."""
  del gcs_emulator
  workdir = f'gs://{gcs.BUCKET}/run-{time.time_ns()}'
  c = tiny_train_config(epochs=3)
  handler = _Collect(logging.ERROR)
  logging.getLogger().addHandler(handler)
  try:
    train_runner.run(c, workdir, stop_after=1)
    assert checkpoint.epochs(workdir) == [0, 1]
    (epath.Path(workdir) / rundir.METRICS).unlink()  # A lost object too.
    assert train_runner.run(c, workdir)['epoch'] == 3
  finally:
    logging.getLogger().removeHandler(handler)
  return workdir, handler.lines


class _Collect(logging.Handler):
  """Keeps the messages of the records it is given."""

  def __init__(self, level):
    super().__init__(level)
    self.lines = []

  def emit(self, record):
    self.lines.append(record.getMessage()[:200])


@pytest.mark.slow
def test_training_into_gcs_resumes_bit_identically(local_run, gcs_run):
  gcs_dir, errors = gcs_run
  got, _ = checkpoint.restore_model(gcs_dir)
  want, _ = checkpoint.restore_model(local_run)
  jax.tree.map(np.testing.assert_array_equal, got, want)
  # metrics.jsonl, lost with epoch 1 in it, is rebuilt from the checkpoints.
  assert _metrics(gcs_dir) == _metrics(local_run)
  assert not _stray(gcs_dir)
  assert not errors  # No rename, so no failed-moveTo tracebacks.


@pytest.mark.slow
def test_probe_from_gcs_into_gcs_with_provenance_and_reuse(
    local_run, gcs_run, gcs_dir, monkeypatch, caplog):
  caplog.set_level(logging.WARNING)
  run = gcs_run[0]
  c = defaults.probe_config(run)
  c.kind = 'special'
  c.special.directions = ('sign',)
  c.sweep.update(num_points=3, recal_samples=64, recal_batch_size=64,
                 eval_batch_size=360)
  work = f'{gcs_dir}/probe'
  path = epath.Path(probe_runner.run(c, work)['special'])
  res = json.loads(path.read_text())
  assert str(path) == f'{work}/special/results.json'
  assert (path.parent / 'figure.png').read_bytes()[:4] == b'\x89PNG'
  (prov,) = res['provenance']
  assert prov['workdir'] == run and prov['epoch'] == 3
  # The same parameters as the local run: the same fingerprint.
  assert prov['fingerprint'] == checkpoint.provenance(local_run)['fingerprint']
  # A rerun reuses the finished result without a sweep.
  patch_study_run(monkeypatch, 'special', _no_compile)
  assert json.loads(epath.Path(probe_runner.run(c, work)['special'])
                    .read_text())['curves'] == res['curves']
  # A torn object is recomputed, as a torn local file is.
  path.write_text(path.read_text()[:80])
  monkeypatch.undo()
  again = json.loads(epath.Path(probe_runner.run(c, work)['special'])
                     .read_text())
  np.testing.assert_allclose(again['curves'][0]['loss'],
                             res['curves'][0]['loss'], rtol=1e-6)
  assert not _stray(gcs_dir)
  assert not _errors(caplog)


def test_gs_path_without_gcsfs_is_a_clear_error(tmp_path):
  """No gcsfs (nor TensorFlow): train.py stops before any work, naming the
  extra to install, with no traceback."""
  (tmp_path / 'sitecustomize.py').write_text(
      "import sys\nsys.modules['gcsfs'] = sys.modules['tensorflow'] = None\n")
  out = subprocess.run(
      [sys.executable, 'train.py', '--workdir=gs://bucket/run'],
      cwd=_REPO, env={**os.environ, 'PYTHONPATH': str(tmp_path)},
      capture_output=True, text=True, timeout=120)
  assert out.returncode == 2, out.stderr[-2000:]
  assert "--workdir='gs://bucket/run' is on gs://, which needs gcsfs: " \
         'pip install -e ".[gcs]"' in out.stderr
  assert 'Traceback' not in out.stderr


@pytest.mark.slow
def test_fedsim_run_and_table_into_gcs_resume(gcs_dir, tmp_path,
                                               monkeypatch):
  c = defaults.fed_offline('digits', '')
  c.fed.update(num_clients=6, fraction=0.5, local_epochs=1, rounds=2)
  c.model.width = 0.25
  c.checkpoint_every = 1
  local = fed_runner.run(c, str(tmp_path / 'local'))
  run = f'{gcs_dir}/run'
  fed_runner.run(c, run, stop_after=1)  # "Killed" after round 1.
  assert fed_runner.run(c, run)['final'] == local['final']
  assert outputs.read_json(epath.Path(run) / 'partition.json') == \
      outputs.read_json(tmp_path / 'local' / 'partition.json')
  # Table mode: the second cell "killed", the first not trained again.
  t = defaults.fed_offline('digits', 'table')
  t.fed.update(num_clients=6, fraction=0.5, local_epochs=1, rounds=1)
  t.model.width = 0.25
  t.table.update(algorithms=('fedavg',), alphas=(0.5,), seeds=(0, 1))
  table = f'{gcs_dir}/table'
  real_run, calls = fed_runner.run, []

  def killed_second(config, workdir, **kw):
    calls.append(workdir)
    if len(calls) == 2:
      raise KeyboardInterrupt
    return real_run(config, workdir, **kw)

  monkeypatch.setattr(fed_runner, 'run', killed_second)
  with pytest.raises(KeyboardInterrupt):
    fed_runner.main(t, table)
  monkeypatch.undo()
  first = epath.Path(fed_runner.cell_dir(table, 'fedavg', 0.5, 0))
  before = (first / 'metrics.jsonl').read_text()  # With its timings.
  out = fed_runner.main(t, table)
  assert (first / 'metrics.jsonl').read_text() == before  # Not retrained.
  accs = [outputs.read_json(epath.Path(fed_runner.cell_dir(
      table, 'fedavg', 0.5, s)) / 'results.json')['final']['test_accuracy']
          for s in (0, 1)]
  assert out['rows'][0]['fedavg']['mean'] == pytest.approx(np.mean(accs))
  assert (epath.Path(table) / 'table.md').read_text().startswith('| data |')
  assert not _stray(gcs_dir)


@pytest.mark.slow
def test_weights_and_compile_cache_on_gcs(gcs_dir, tmp_path):
  """--weights=gs://… is read and fingerprinted as a local file is; JAX's
  compilation cache writes its entries to a gs:// folder."""
  sd = {'a.weight': np.arange(6, dtype=np.float32).reshape(2, 3)}
  local = tmp_path / 'w.npz'
  np.savez(local, **sd)
  remote = f'{gcs_dir}/w.npz'
  epath.Path(remote).write_bytes(local.read_bytes())
  assert convert.provenance(remote) == {
      'weights': remote, 'sha256': convert.sha256(str(local))}
  np.testing.assert_array_equal(convert.load_state_dict(remote)['a.weight'],
                                sd['a.weight'])
  cache = f'{gcs_dir}/jax_cache'
  try:
    assert compile_cache.enable(cache, min_compile_secs=0) == cache
    jax.jit(lambda a: a * 7.0 - 2.0)(np.arange(5.0)).block_until_ready()
    assert fsspec.filesystem('gs').find(cache)
  finally:
    compile_cache.enable('none')
