"""valley_jax.cli: the mains' error boundary (issue: a user error is a
message, not a traceback) and the shared start."""

import errno
import os
import pathlib
import subprocess
import sys

import pytest

from valley_jax import cli
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
