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

from etils import epath
import fsspec
import jax
import numpy as np
import pytest
from conftest import (free_port, launch_two, patch_study_run,
                      small_probe_config, tiny_train_config)

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


# One test, not one per step: xdist would train a shared module fixture once
# per worker.
@pytest.mark.slow
def test_train_and_probe_on_gcs(gcs_dir, tmp_path, monkeypatch, caplog):
  """Training into gs://, "killed" after epoch 1 and resumed after its
  metrics.jsonl was lost, ends bit-identical to an uninterrupted local run;
  a probe reads it and writes into gs:// with provenance, reuses a finished
  result and recomputes a torn one; no write logs an error (a rename on
  gs:// would log gcsfs's refused moveTo) or leaves a temporary object."""
  caplog.set_level(logging.WARNING)
  c = tiny_train_config(epochs=3)
  local = str(tmp_path / 'local')
  train_runner.run(c, local)
  run = f'{gcs_dir}/run'
  train_runner.run(c, run, stop_after=1)
  assert checkpoint.epochs(run) == [0, 1]
  (epath.Path(run) / rundir.METRICS).unlink()  # A lost object too.
  assert train_runner.run(c, run)['epoch'] == 3
  got, _ = checkpoint.restore_model(run)
  want, _ = checkpoint.restore_model(local)
  jax.tree.map(np.testing.assert_array_equal, got, want)
  # metrics.jsonl, lost with epoch 1 in it, is rebuilt from the checkpoints.
  assert _metrics(run) == _metrics(local)

  p = small_probe_config(run, 'special')
  p.special.directions = ('sign',)
  p.sweep.update(num_points=3, recal_samples=64, recal_batch_size=64)
  work = f'{gcs_dir}/probe'
  path = epath.Path(probe_runner.run(p, work)['special'])
  res = json.loads(path.read_text())
  assert str(path) == f'{work}/special/results.json'
  assert (path.parent / 'figure.png').read_bytes()[:4] == b'\x89PNG'
  (prov,) = res['provenance']
  assert prov['workdir'] == run and prov['epoch'] == 3
  # The same parameters as the local run: the same fingerprint.
  assert prov['fingerprint'] == checkpoint.provenance(local)['fingerprint']
  # A rerun reuses the finished result without a sweep.
  patch_study_run(monkeypatch, 'special', _no_compile)
  assert json.loads(epath.Path(probe_runner.run(p, work)['special'])
                    .read_text())['curves'] == res['curves']
  # A torn object is recomputed, as a torn local file is.
  path.write_text(path.read_text()[:80])
  monkeypatch.undo()
  again = json.loads(epath.Path(probe_runner.run(p, work)['special'])
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


def _cell(seed: int) -> fed_runner.Cell:
  return fed_runner.Cell('fedavg', 0.5, (), seed)


@pytest.mark.slow
def test_fedsim_run_and_table_into_gcs_resume(gcs_dir, tmp_path,
                                               monkeypatch):
  c = defaults.fed_offline('digits', '')
  c.fed.update(num_clients=6, fraction=0.5, local_epochs=1, rounds=2)
  c.model.width = 0.25
  c.checkpoint_every = 1
  c.checkpoint_seconds = 0.0
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
  t.table.batch_runs = 1  # One cell's rounds per _advance call.
  real_advance, calls = fed_runner._advance, []  # pylint: disable=protected-access

  def killed_second(prog, lives, *args):
    calls.append(lives)
    if len(calls) == 2:
      raise KeyboardInterrupt
    return real_advance(prog, lives, *args)

  monkeypatch.setattr(fed_runner, '_advance', killed_second)
  with pytest.raises(KeyboardInterrupt):
    fed_runner.main(t, table)
  monkeypatch.undo()
  first = epath.Path(fed_runner.cell_dir(table, _cell(0)))
  before = (first / 'metrics.jsonl').read_text()  # With its timings.
  out = fed_runner.main(t, table)
  assert (first / 'metrics.jsonl').read_text() == before  # Not retrained.
  accs = [outputs.read_json(epath.Path(fed_runner.cell_dir(
      table, _cell(s))) / 'results.json')['final']['test_accuracy']
          for s in (0, 1)]
  assert out['rows'][0]['fedavg']['mean'] == pytest.approx(np.mean(accs))
  assert '| data | α | fedavg |' in (epath.Path(table) / 'table.md'
                                     ).read_text()
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


@pytest.mark.slow
def test_two_processes_share_a_gcs_workdir(gcs_dir, tmp_path):
  """train.py as two processes (two CPU devices each) into one gs://
  workdir: process 0 writes the files, both write the checkpoint, and the
  model equals one process's on four devices."""
  overrides = {'model.width': 0.125, 'train.epochs': 1,
               'data.n_train': 512, 'train.batch_size': 64,
               'train.eval_batch_size': 120}
  flags = [f"--config={_REPO / 'configs' / 'digits_mlp.py'}",
           *[f'--config.{k}={v}' for k, v in overrides.items()]]
  dist = [f'--coordinator_address=localhost:{free_port()}',
          '--num_processes=2']
  launch_two(lambda i: [sys.executable, str(_REPO / 'train.py'), *dist,
                        f'--process_id={i}', f'--workdir={gcs_dir}',
                        *flags], tmp_path)
  assert checkpoint.epochs(gcs_dir) == [0, 1]
  assert [r['epoch'] for r in _metrics(gcs_dir)] == [1]
  assert not _stray(gcs_dir)
  c = defaults.digits_config('mlp', None, hidden=(256, 256))
  c.update_from_flattened_dict({**overrides, 'num_devices': 4})
  train_runner.run(c, str(tmp_path / 'one'))
  got, _ = checkpoint.restore_model(gcs_dir)
  want, _ = checkpoint.restore_model(str(tmp_path / 'one'))
  jax.tree.map(lambda a, b: np.testing.assert_allclose(
      a, b, rtol=1e-5, atol=1e-6), got, want)
