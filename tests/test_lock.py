"""valley_jax.rundir.lock: one writer per workdir."""

import json
import os
import pathlib
import signal
import subprocess
import sys
import time

import pytest

from conftest import tiny_train_config
from valley_jax import rundir
from valley_jax.errors import WorkdirBusyError
from valley_jax.train import runner as train_runner

_HOLD = """
import sys, time
from valley_jax import rundir
with rundir.lock(sys.argv[1]):
  print('held', flush=True)
  time.sleep(120)
"""


def _holder(workdir) -> subprocess.Popen:
  p = subprocess.Popen([sys.executable, '-c', _HOLD, str(workdir)],
                       stdout=subprocess.PIPE, text=True)
  assert p.stdout.readline().strip() == 'held'
  return p


def test_second_writer_fails_at_once_naming_the_holder(tmp_path):
  p = _holder(tmp_path)
  try:
    t = time.time()
    with pytest.raises(WorkdirBusyError, match=f'pid {p.pid} on '):
      with rundir.lock(str(tmp_path)):
        pass
    assert time.time() - t < 5
  finally:
    p.kill()
    p.wait()


def test_lock_of_a_killed_holder_is_free(tmp_path):
  p = _holder(tmp_path)
  os.kill(p.pid, signal.SIGKILL)
  p.wait()
  with rundir.lock(str(tmp_path)):  # The kernel released it.
    held = json.loads((tmp_path / rundir.LOCK).read_text())
  assert held['pid'] == os.getpid()


def test_lock_is_released_after_the_block(tmp_path):
  with rundir.lock(str(tmp_path)):
    pass
  with rundir.lock(str(tmp_path)):
    pass


def test_train_refuses_a_locked_workdir_before_writing(tmp_path):
  w = tmp_path / 'run'
  with rundir.lock(str(w)):
    with pytest.raises(WorkdirBusyError, match='in use by another run'):
      train_runner.run(tiny_train_config(epochs=1), str(w))
  assert sorted(p.name for p in pathlib.Path(w).iterdir()) == [rundir.LOCK]
