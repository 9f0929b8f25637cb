"""valley_jax.preemption: SIGTERM and SIGINT stop the mains at a step they
resume from exactly; the handler itself, and each main by subprocess."""

import json
import os
import pathlib
import signal
import subprocess
import sys
import time

import pytest
import numpy as np
from conftest import (kinds_probe_config, tensorboard_scalars,
                      tiny_train_config)

from valley_jax import checkpoint, defaults, preemption
from valley_jax.fed import runner as fed_runner
from valley_jax.probe import runner as probe_runner
from valley_jax.train import runner as train_runner

_REPO = pathlib.Path(__file__).resolve().parent.parent
_TESTS = pathlib.Path(__file__).resolve().parent


# ----------------------------------------------------------------- handler


def test_signal_is_recorded_then_handlers_restored():
  before = signal.getsignal(signal.SIGTERM)
  with preemption.graceful():
    assert not preemption.requested(1)
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(0.01)  # The handler runs at the next bytecode.
    assert preemption.requested(2) and preemption.signal_name() == 'SIGTERM'
  assert signal.getsignal(signal.SIGTERM) is before
  with preemption.graceful():  # A new block starts with no signal.
    assert not preemption.requested(3)


def test_second_ctrl_c_stops_at_once():
  with pytest.raises(KeyboardInterrupt):
    with preemption.graceful():
      os.kill(os.getpid(), signal.SIGINT)
      time.sleep(0.01)
      assert preemption.requested(1)
      os.kill(os.getpid(), signal.SIGINT)
      time.sleep(0.01)


def test_interrupt_mode_raises_once_with_the_signal_named():
  with pytest.raises(preemption.Preempted, match='Stopped by SIGTERM'):
    with preemption.graceful(interrupt=True):
      os.kill(os.getpid(), signal.SIGTERM)
      time.sleep(0.01)


def test_inner_block_keeps_the_outer_interrupt_setting_after_it():
  with preemption.graceful(interrupt=True):
    with preemption.graceful():
      os.kill(os.getpid(), signal.SIGTERM)
      time.sleep(0.01)  # Recorded only: the inner block does not raise.
      assert preemption.requested(1)


# ------------------------------------------------------- mains, by subprocess


def _rows(workdir, drop=('seconds',)):
  lines = pathlib.Path(workdir, 'metrics.jsonl').read_text().splitlines()
  return [{k: v for k, v in json.loads(line).items() if k not in drop}
          for line in lines]


def _config_file(tmp_path, body: str) -> str:
  """A config file whose get_config returns `body` (conftest's helpers)."""
  path = tmp_path / 'cfg.py'
  path.write_text(f'import sys\nsys.path.insert(0, {str(_TESTS)!r})\n'
                  f'import conftest\nfrom valley_jax import defaults\n\n'
                  f'def get_config(arg=None):\n  return {body}\n')
  return str(path)


def _sigterm_when(argv, ready, tmp_path, timeout_s: float = 240):
  """Starts a main, sends SIGTERM once ready() holds, returns (rc, stderr)."""
  err = tmp_path / 'stderr.txt'
  with open(err, 'w') as f:
    proc = subprocess.Popen([sys.executable, *argv], cwd=tmp_path,
                            stdout=subprocess.DEVNULL, stderr=f)
    try:
      t0 = time.time()
      while not ready() and proc.poll() is None:
        assert time.time() - t0 < timeout_s, err.read_text()[-3000:]
        time.sleep(0.02)
      proc.send_signal(signal.SIGTERM)
      proc.wait(timeout=timeout_s)
    finally:
      if proc.poll() is None:
        proc.kill()
  return proc.returncode, err.read_text()


def _check_stopped(rc: int, err: str, saved: str) -> None:
  assert rc == preemption.STATUS, err[-3000:]
  assert 'Traceback' not in err
  line = [ln for ln in err.splitlines() if ln.startswith('Stopped by')]
  assert len(line) == 1, err[-3000:]
  assert line[0].startswith('Stopped by SIGTERM: saved ') and saved in line[0]
  assert line[0].endswith('To resume, run the same command again.')


@pytest.mark.slow
def test_train_sigterm_mid_epoch_then_rerun_equals_uninterrupted(
    trained_mlp, tmp_path):
  """Every step saved (a marker to signal at); the signal lands in an epoch
  and the rerun ends with trained_mlp's parameters and metrics."""
  cfg = _config_file(tmp_path, 'conftest.tiny_train_config(epochs=3)')
  w = tmp_path / 'run'
  argv = [str(_REPO / 'train.py'), f'--config={cfg}', f'--workdir={w}']
  rc, err = _sigterm_when(
      [*argv, '--config.train.checkpoint_every_steps=1'],
      lambda: (w / checkpoint.STEPS_DIR / '2').exists(), tmp_path)
  _check_stopped(rc, err, str(w))
  assert 'global step' in err  # Stopped inside an epoch (8 steps each).
  # The same command again (in this process: the runner is what it runs).
  train_runner.run(tiny_train_config(epochs=3), str(w))
  assert checkpoint.provenance(str(w))['fingerprint'] == (
      checkpoint.provenance(trained_mlp)['fingerprint'])
  assert _rows(w) == _rows(trained_mlp)
  assert not list((w / checkpoint.STEPS_DIR).iterdir())  # Dropped at the end.
  # TensorBoard shows each epoch once (the rerun purged what it redid).
  tb = tensorboard_scalars(w)['test_accuracy']
  assert [s for s, _ in tb] == [8, 16, 24]
  np.testing.assert_array_equal([v for _, v in tb], np.float32(
      [r['test_accuracy'] for r in _rows(w)]))


@pytest.mark.slow
def test_train_resumes_mid_epoch_exactly(trained_mlp, tmp_path, monkeypatch):
  """The stop lands on step 13 of 24 (5 of the 8 of epoch 2) for sure."""
  monkeypatch.setattr(preemption, 'requested', lambda step: step == 13)
  w = str(tmp_path)
  with pytest.raises(preemption.Preempted, match=r'5 of the 8 steps of epoch '
                     r'2 \(global step 13\)'):
    train_runner.run(tiny_train_config(epochs=3), w)
  assert checkpoint.epochs(w) == [0, 1]
  monkeypatch.undo()
  train_runner.run(tiny_train_config(epochs=3), w)
  assert checkpoint.provenance(w)['fingerprint'] == (
      checkpoint.provenance(trained_mlp)['fingerprint'])
  assert _rows(w) == _rows(trained_mlp)


@pytest.mark.slow
def test_fedsim_table_sigterm_mid_table_then_rerun_equals_uninterrupted(
    tmp_path):
  """Two one-round cells: the signal comes once the first has a metrics
  row, so it lands while that cell finishes (the table stops before the
  next cell) or inside the round of the second (which is saved)."""
  ref = tmp_path / 'ref'
  ns = {'defaults': defaults}
  exec(_TABLE_SOURCE, ns)  # pylint: disable=exec-used
  config = ns['tiny_table']()
  want = fed_runner.table(config, str(ref))
  cfg = _config_file(tmp_path, 'tiny_table()')
  text = pathlib.Path(cfg).read_text().replace(
      'def get_config', f'{_TABLE_SOURCE}\n\ndef get_config')
  pathlib.Path(cfg).write_text(text)
  w = tmp_path / 'table'
  first = w / 'fedavg' / 'alpha0.5' / 'seed0' / 'metrics.jsonl'
  argv = [str(_REPO / 'fedsim.py'), f'--config={cfg}', f'--workdir={w}']
  rc, err = _sigterm_when(argv, first.exists, tmp_path)
  _check_stopped(rc, err, 'table cell ')
  fed_runner.table(config, str(w))  # The same command again.
  got = json.loads((w / 'table.json').read_text())
  got.pop('timing')  # Seconds and compile counts differ between processes.
  want = {k: v for k, v in want.items() if k != 'timing'}
  assert json.loads(json.dumps(got).replace(str(w), str(ref))) == (
      json.loads(json.dumps(want)))
  for cell in ('seed0', 'seed1'):
    a, b = (d / 'fedavg' / 'alpha0.5' / cell for d in (ref, w))
    assert _rows(a) == _rows(b)
    assert [s for s, _ in tensorboard_scalars(b)['test_accuracy']] == [1]
    assert json.loads((b / 'results.json').read_text())[
        'global_fingerprint'] == json.loads((a / 'results.json').read_text())[
            'global_fingerprint']


_TABLE_SOURCE = '''
def tiny_table():
  c = defaults.fed_offline('digits', 'rounds1')
  c.fed.update(num_clients=10, fraction=0.3, local_epochs=1)
  c.model.width = 0.25
  c.mode = 'table'
  c.table.update(algorithms=('fedavg',), alphas=(0.5,), seeds=(0, 1))
  return c
'''


@pytest.mark.slow
def test_probe_sigterm_mid_study_then_rerun_equals_uninterrupted(
    trained_mlp, tmp_path):
  kinds = ('noise_types', 'sign_ratio', 'groups')
  ref = tmp_path / 'ref'
  config = kinds_probe_config(trained_mlp, ','.join(kinds))
  probe_runner.run(config, str(ref))
  cfg = _config_file(
      tmp_path, f'conftest.kinds_probe_config({trained_mlp!r}, '
      f'{",".join(kinds)!r})')
  w = tmp_path / 'probe'
  argv = [str(_REPO / 'probe.py'), f'--config={cfg}', f'--workdir={w}']
  rc, err = _sigterm_when(argv, (w / kinds[0] / 'results.json').exists,
                          tmp_path)
  _check_stopped(rc, err, f"the results of ['{kinds[0]}'")
  probe_runner.run(config, str(w))  # The same command again.
  for k in kinds:
    a, b = (json.loads((d / k / 'results.json').read_text())
            for d in (ref, w))
    assert a['curves'] == b['curves'] and a['provenance'] == b['provenance']


def test_preempted_passes_through_broad_error_wrappers(run2):
  """A SIGTERM while a checkpoint is read: the probe's handler raises
  Preempted inside Orbax's restore, which must not become 'checkpoint
  cannot be read' (it did, exit 2 instead of 75)."""
  mngr = checkpoint.manager(run2, read_only=True)

  def interrupted(*args, **kwargs):
    raise preemption.Preempted('nothing yet')

  mngr.restore = interrupted
  with pytest.raises(preemption.Preempted):
    checkpoint._restore(mngr, 1)  # pylint: disable=protected-access
