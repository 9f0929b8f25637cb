"""Times the commands the README quotes, with the machine and its load.

  python bench/timings.py                       # the three mains, cold cache
  python bench/timings.py --what=mains,fast_tests,tests,setup_probe
  python bench/timings.py --out=bench/results/timings.jsonl

Each command runs in a new temporary directory with an empty compilation
cache (VALLEY_JAX_COMPILE_CACHE points into it), as a newcomer's first run
does. One JSON line per command: its wall time, exit code, the CPU model and
core count, the 1-minute load average before and after (other work on the
machine slows every number here), the date and the git commit. docs/timings.md
collects these lines into ranges per machine; `setup_probe` and `setup_tests`
create a new virtual environment and time the README's two set-up commands,
install included (pip's cache as it is on the machine).
"""

import datetime
import os
import pathlib
import platform
import subprocess
import sys
import tempfile
import time

from absl import app, flags

import timing  # bench/timing.py, beside this script

_REPO = pathlib.Path(__file__).resolve().parents[1]
_WHAT = flags.DEFINE_list(
    'what', ['train', 'probe', 'fedsim'],
    'Commands to time: train, probe, fedsim, fast_tests, tests, setup_probe, '
    'setup_tests.')
_OUT = flags.DEFINE_string('out', '', 'Append the JSON lines to this file.')

_PY = sys.executable
_COMMANDS = {
    'train': [_PY, str(_REPO / 'train.py'), '--workdir=run'],
    'probe': [_PY, str(_REPO / 'probe.py')],
    'fedsim': [_PY, str(_REPO / 'fedsim.py'), '--workdir=fed'],
    'fast_tests': [_PY, '-m', 'pytest', '-n', '2', '-m', 'not slow', '-q',
                   '-p', 'no:cacheprovider', str(_REPO / 'tests')],
    'tests': [_PY, '-m', 'pytest', '-n', '2', '-q', '-p', 'no:cacheprovider',
              str(_REPO / 'tests')],
}
# The README's two set-up commands, each in a new virtual environment.
_SETUP = {
    'setup_probe': 'pip install -q -e {repo} && python {repo}/probe.py',
    'setup_tests': ('pip install -q -e "{repo}[test]" && '
                    'python -m pytest -n 2 -q -p no:cacheprovider'),
}


def machine() -> dict:
  """CPU model, cores and the 1-minute load average."""
  model = platform.processor() or platform.machine()
  try:
    for line in pathlib.Path('/proc/cpuinfo').read_text().splitlines():
      if line.startswith('model name'):
        model = line.split(':', 1)[1].strip()
        break
  except OSError:
    pass
  return {'cpu': model, 'cores': os.cpu_count(),
          'load1': round(os.getloadavg()[0], 2)}


def commit() -> str:
  out = subprocess.run(['git', 'rev-parse', '--short', 'HEAD'], cwd=_REPO,
                       capture_output=True, text=True, check=False)
  return out.stdout.strip() or 'unknown'


def command(what: str, tmp: str) -> list[str] | str:
  """The argv (or shell line, for the set-up commands) of `what`."""
  if what in _COMMANDS:
    return _COMMANDS[what]
  venv = os.path.join(tmp, 'venv')
  line = _SETUP[what].format(repo=_REPO)
  return (f'{_PY} -m venv {venv} && . {venv}/bin/activate && '
          f'pip install -q --upgrade pip && {line}')


def time_one(what: str) -> dict:
  """Runs `what` once in a new temporary directory; its JSON record."""
  with tempfile.TemporaryDirectory() as tmp:
    env = dict(os.environ, VALLEY_JAX_COMPILE_CACHE=os.path.join(tmp, 'jax'))
    argv = command(what, tmp)
    before = machine()
    start = time.perf_counter()
    # The tests read configs/ relative to the repository, as the README runs
    # them; the mains run from a new folder, as a newcomer's first run does.
    cwd = _REPO if what.endswith('tests') else tmp
    out = subprocess.run(argv, cwd=cwd, env=env, shell=isinstance(argv, str),
                         capture_output=True, text=True, check=False)
    wall = time.perf_counter() - start
  tail = (out.stdout.strip() or out.stderr.strip()).splitlines()[-1:] or ['']
  return {'what': what, 'wall_s': round(wall, 1), 'rc': out.returncode,
          'last_line': tail[0][-200:], **before,
          'load1_after': machine()['load1'],
          'date': datetime.date.today().isoformat(), 'commit': commit()}


def main(argv):
  del argv
  for what in _WHAT.value:
    if what not in _COMMANDS and what not in _SETUP:
      raise app.UsageError(f'Unknown --what {what!r}; choose from '
                           f'{sorted({**_COMMANDS, **_SETUP})}.')
  for what in _WHAT.value:
    timing.emit(time_one(what), _OUT.value)


if __name__ == '__main__':
  app.run(main)
