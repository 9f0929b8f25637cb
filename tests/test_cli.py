"""valley_jax.cli: the mains' error boundary (issue: a user error is a
message, not a traceback) and the shared start."""

import errno
import os
import pathlib
import re
import subprocess
import sys

import pytest

from valley_jax import cli, outputs, preemption
from valley_jax.errors import InputError

_REPO = pathlib.Path(__file__).resolve().parent.parent


def _main(tmp_path, main: str, *flags: str, env=None):
  """Runs a main in a subprocess from `tmp_path`; returns the result."""
  return subprocess.run(
      [sys.executable, str(_REPO / main), *flags], cwd=tmp_path,
      capture_output=True, text=True, timeout=300,
      env={**os.environ, **(env or {})})


@pytest.mark.slow
@pytest.mark.parametrize('main,flag,field', [
    ('train.py', '--config.train.epochs=0', 'config.train.epochs=0'),
    ('probe.py', '--config.epoch=lats', "'last'"),
    ('fedsim.py', '--config.fed.rounds=0', 'config.fed.rounds=0'),
])
def test_user_error_is_a_message_without_traceback(tmp_path, main, flag,
                                                   field):
  out = _main(tmp_path, main, flag)
  assert out.returncode == cli.USER_ERROR_STATUS
  assert 'Traceback' not in out.stderr
  assert field in out.stderr and out.stderr.startswith('Error: ')
  assert not any(tmp_path.iterdir())  # Nothing written before the check.


@pytest.mark.slow
def test_traceback_on_request(tmp_path):
  out = _main(tmp_path, 'train.py', '--config.train.epochs=0',
              env={cli.TRACEBACK_ENV: '1'})
  assert out.returncode != 0
  assert 'Traceback' in out.stderr and 'InputError' in out.stderr


@pytest.mark.slow
def test_compile_cache_off_is_refused_not_a_folder(tmp_path):
  out = _main(tmp_path, 'train.py', '--config.compile_cache=off')
  assert out.returncode == cli.USER_ERROR_STATUS
  assert '--config.compile_cache=none' in out.stderr
  assert not (tmp_path / 'off').exists()


@pytest.mark.slow
def test_missing_peer_times_out_with_a_message(tmp_path):
  out = _main(tmp_path, 'train.py', '--coordinator_address=127.0.0.1:0',
              '--num_processes=2', '--process_id=0', '--process_timeout=3')
  assert out.returncode == cli.USER_ERROR_STATUS
  assert 'processes [1] did not join within 3 s' in out.stderr
  assert 'Traceback' not in out.stderr and 'Fatal' not in out.stderr
  assert not (tmp_path / 'runs').exists()


@pytest.mark.slow
@pytest.mark.parametrize('flag,says', [
    ('--config.train.epoch=3', "--config.train.epoch=3: the config has no "
     "field 'epoch'; did you mean 'epochs'?"),
    ('--config=nope.py', "--config=nope.py: the config file 'nope.py' does "
     'not exist'),
])
def test_config_flag_errors_go_through_the_boundary(tmp_path, flag, says):
  """config_flags loads --config while absl parses the flags (or, for a
  key of the default file, while the flags are defined): each mistake is
  one 'Error: ...' line and status 2, before any work."""
  out = subprocess.run([sys.executable, 'train.py', flag], cwd=_REPO,
                       capture_output=True, text=True, timeout=300)
  assert out.returncode == cli.USER_ERROR_STATUS, out.stderr[-2000:]
  assert out.stderr.startswith('Error: ') and says in out.stderr
  assert 'Traceback' not in out.stderr and 'FATAL' not in out.stderr


@pytest.mark.slow
def test_unknown_storage_scheme_refused_by_name(tmp_path):
  out = _main(tmp_path, 'train.py', '--workdir=hdfs://nn/runs/x')
  assert out.returncode == cli.USER_ERROR_STATUS, out.stderr[-2000:]
  assert ("--workdir='hdfs://nn/runs/x' is on hdfs://, which valley_jax does "
          'not support') in out.stderr and 'Traceback' not in out.stderr
  assert not any(tmp_path.iterdir())


@pytest.mark.parametrize('fields,says', [
    ([('--workdir', 'runs/a://b')], "a local name cannot contain '://'"),
    ([('--workdir', 'runs/x'), ('config.checkpoint', 's3://b/run')],
     'config.checkpoint=\'s3://b/run\' is on s3://'),
    ([('--workdir', 'gs://valley-jax-unreachable/run')],
     "gs://valley-jax-unreachable did not answer within 1 s"),
])
def test_paths_checked_before_work(monkeypatch, fields, says):
  """gs:// against a closed port: the bucket is asked once, for 1 s."""
  pytest.importorskip('gcsfs')
  monkeypatch.setenv('STORAGE_EMULATOR_HOST', 'http://127.0.0.1:9')
  monkeypatch.setenv(outputs.STORAGE_TIMEOUT_ENV, '1')
  with pytest.raises(InputError, match=re.escape(says)):
    cli.check_paths(fields)


def test_config_strings_that_are_not_urls_are_left_to_their_runner():
  cli.check_paths([('--workdir', 'runs/x'),
                   ('config.train_runs[0]', 'runs/a=gs://b/c.py')])


_FULL_DISK = '''
import logging
import orbax.checkpoint as ocp
_save = ocp.CheckpointManager.save
def save(self, step, *args, **kwargs):
  if step == {step}:
    try:  # What TensorStore raises, and Orbax's thread logs, on a full disk.
      raise ValueError('{status}: Error writing local file "' +
                       str(self.directory) + '/{step}/x": [os_error_code=28]')
    except ValueError:
      logging.getLogger('absl').error('Save failed', exc_info=True)
      raise
  return _save(self, step, *args, **kwargs)
ocp.CheckpointManager.save = save
'''


@pytest.mark.slow
def test_orbax_full_disk_is_the_documented_message(tmp_path):
  """The fault is injected into Orbax's save of epoch 0, the first
  (sitecustomize): one message naming the checkpoint, no traceback (nor the
  thread's log)."""
  (tmp_path / 'sitecustomize.py').write_text(
      _FULL_DISK.format(step=0, status='RESOURCE_EXHAUSTED'))
  config = tmp_path / 'cfg.py'
  config.write_text(
      f'import sys\nsys.path.insert(0, {str(_REPO / "tests")!r})\n'
      'from conftest import tiny_train_config\n'
      'def get_config(arg=None):\n  return tiny_train_config(epochs=1)\n')
  out = subprocess.run(
      [sys.executable, 'train.py', f'--config={config}',
       f'--workdir={tmp_path / "run"}'], cwd=_REPO, capture_output=True,
      text=True, timeout=300,
      env={**os.environ, 'PYTHONPATH': str(tmp_path)})
  assert out.returncode == cli.USER_ERROR_STATUS, out.stderr[-3000:]
  assert (f'Could not write ({tmp_path / "run" / "checkpoints"}/0/x): the '
          'disk is full or a storage quota is exceeded.') in out.stderr
  assert 'Traceback' not in out.stderr and 'Save failed' not in out.stderr


def test_fed_hparams_are_set_by_flag(monkeypatch):
  """fed.hparams starts empty: its keys are taken out of argv before
  config_flags sees them and set once the config is loaded."""
  import ml_collections  # pylint: disable=g-import-not-at-top
  monkeypatch.setattr(cli, '_open_overrides', [])
  argv = ['fedsim.py', '--config.fed.hparams.reduction=sum',
          '--config.fed.rounds=3', '--config.fed.hparams.mu', '0.01',
          '--config.table.grids.fedprox.mu=(0.1, 1)']
  cli._take_open_overrides(argv)  # pylint: disable=protected-access
  assert argv == ['fedsim.py', '--config.fed.rounds=3']
  c = ml_collections.ConfigDict({'fed': {'hparams': {}}, 'table': {
      'grids': {'fedprox': {}}}})
  c.lock()
  cli.apply_open_overrides(c)
  assert c.fed.hparams.to_dict() == {'reduction': 'sum', 'mu': 0.01}
  assert c.table.grids.fedprox.mu == (0.1, 1)


def test_open_override_of_a_missing_parent_is_a_user_error(monkeypatch):
  import ml_collections  # pylint: disable=g-import-not-at-top
  monkeypatch.setattr(cli, '_open_overrides', [
      ('--config.table.grids.moon.mu=1', 'table.grids.moon.mu', '1')])
  with pytest.raises(InputError, match="no field 'table.grids.moon'"):
    cli.apply_open_overrides(ml_collections.ConfigDict(
        {'table': {'grids': {}}}))


def test_tensorstore_permission_denied_is_a_refused_write(capsys):
  try:
    raise ValueError('PERMISSION_DENIED: Error writing "gs://b/run/x": 403')
  except ValueError as denied:
    wrapped = RuntimeError('orbax: save failed')
    wrapped.__cause__ = denied
  err = _stopped(wrapped, capsys)
  assert err.startswith('Error: Could not write (gs://b/run/x): permission '
                        'was denied.')


def test_preempted_exits_75_with_one_line(capsys):
  with pytest.raises(SystemExit) as e:
    with cli.boundary():
      raise preemption.Preempted('epoch 3 in runs/x')
  assert e.value.code == preemption.STATUS == 75
  assert capsys.readouterr().err == (
      'Stopped by a signal: saved epoch 3 in runs/x. To resume, run the same '
      'command again.\n')


def _stopped(error: BaseException, capsys) -> str:
  with pytest.raises(SystemExit) as e:
    with cli.boundary():
      raise error
  assert e.value.code == cli.USER_ERROR_STATUS
  return capsys.readouterr().err


def test_boundary_prints_a_user_error(capsys):
  err = _stopped(InputError('config.x=1 must be 2.'), capsys)
  assert err.startswith('Error: config.x=1 must be 2.')


def test_boundary_explains_a_full_disk_behind_another_exception(capsys):
  try:
    raise OSError(errno.ENOSPC, 'No space left on device', '/w/metrics')
  except OSError as full:
    wrapped = RuntimeError('orbax: write failed')
    wrapped.__cause__ = full
  err = _stopped(wrapped, capsys)
  assert 'the disk is full' in err and '/w/metrics' in err
  assert 'resumes from the last checkpoint' in err


def test_boundary_keeps_the_traceback_of_a_bug():
  with pytest.raises(KeyError):
    with cli.boundary():
      raise KeyError('a bug')
  with pytest.raises(OSError):  # An OSError that is not a write fault.
    with cli.boundary():
      raise OSError(errno.ECONNRESET, 'reset')


def test_boundary_shows_the_traceback_when_asked(monkeypatch):
  monkeypatch.setenv(cli.TRACEBACK_ENV, '1')
  with pytest.raises(InputError):
    with cli.boundary():
      raise InputError('config.x=1 must be 2.')
