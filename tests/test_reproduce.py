"""docs/reproduce.md cannot drift from the configs: one row per probe and fed
config, and every command in it is one that config's docstring gives and
that loads."""

import glob
import importlib.util
import os
import re

import pytest

from valley_jax.fed import runner as fed_runner
from valley_jax.probe import runner as probe_runner

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_DOC = os.path.join(_ROOT, 'docs', 'reproduce.md')
_CONFIGS = sorted(
    os.path.relpath(p, _ROOT) for pattern in ('probe_*.py', 'fed_*.py')
    for p in glob.glob(os.path.join(_ROOT, 'configs', pattern)))
_MAINS = {'probe': 'probe.py', 'fed': 'fedsim.py'}
_COMMAND_COLUMNS = ('Offline command', 'Real-data command')


def _module(path):
  spec = importlib.util.spec_from_file_location('cfg', os.path.join(_ROOT,
                                                                    path))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def _flat(text: str) -> str:
  """Text with its line continuations joined and its spaces collapsed."""
  return ' '.join(text.replace('\\\n', ' ').split())


def _rows() -> list[dict[str, str]]:
  lines = [ln for ln in open(_DOC, encoding='utf-8').read().splitlines()
           if ln.startswith('|')]
  header = [c.strip() for c in lines[0].strip('|').split('|')]
  rows = []
  for ln in lines[2:]:
    cells = [c.strip() for c in ln.strip('|').split('|')]
    assert len(cells) == len(header), f'a "|" inside a cell? {ln[:80]}'
    rows.append(dict(zip(header, cells)))
  return rows


def _config_of(row) -> str:
  m = re.fullmatch(r'`(configs/\w+\.py)`', row['Config'])
  assert m, row['Config']
  return m.group(1)


def _commands(row) -> list[str]:
  return [c for col in _COMMAND_COLUMNS
          for c in re.findall(r'`(python [^`]+)`', row[col])]


def _default_config(main: str) -> str:
  """The config a main loads with no --config (cli.define_flags)."""
  with open(os.path.join(_ROOT, main), encoding='utf-8') as f:
    return 'configs/' + re.search(r"define_flags\(\s*'([\w.]+)'",
                                  f.read()).group(1)


def test_one_row_per_config():
  configs = [_config_of(r) for r in _rows()]
  missing = sorted(set(_CONFIGS) - set(configs))
  extra = sorted(c for c in configs
                 if configs.count(c) > 1 or c not in _CONFIGS)
  assert not missing and not extra, (
      f'docs/reproduce.md: no row for {missing}; extra or repeated: {extra}')


@pytest.mark.parametrize('path', _CONFIGS)
def test_commands_are_the_configs_own(path):
  """Each command runs the row's config with the main of its kind, and is
  written in that config's docstring (its arguments, continuations
  joined); its config and arg load and pass the main's name checks."""
  row = next((r for r in _rows() if _config_of(r) == path), None)
  assert row is not None, f'docs/reproduce.md has no row for {path}'
  module = _module(path)
  doc = _flat(module.__doc__)
  main = _MAINS[os.path.basename(path).split('_')[0]]
  if f'python {main}' in doc:  # A config whose docstring gives a command.
    assert _commands(row), f'{path}: its row in docs/reproduce.md has none'
  for command in _commands(row):
    head, _, args = _flat(command).partition(f'python {main}')
    assert head == '', f'{path}: {command!r} does not run {main}'
    args = args.strip()
    assert (args or f'python {main}') in doc, (
        f'{path}: {command!r} is not in its docstring')
    m = re.search(r'--config=(configs/\w+\.py)(?::(\S+))?', args)
    assert (m.group(1) if m else _default_config(main)) == path, command
    config = module.get_config(m.group(2) if m else None)
    if main == 'probe.py':
      probe_runner.check_names(config)
      probe_runner.train_runs(config)  # Every entry loads and validates.
    else:
      fed_runner.validate(config)
