"""What the three mains share: their flags, the start of a run, the errors.

train.py, probe.py and fedsim.py each define their flags with `define_flags`
and run their `main` inside `boundary()`, beginning with `start`, which
joins the other processes of a multi-process run (before anything touches a
device), quiets Orbax's INFO logging unless --verbosity was given, and turns
on the persistent compilation cache of config.compile_cache.

`boundary` is the one place where the project's errors for user mistakes
(`valley_jax.errors.UserError`) and a full disk or a refused write become a
message and exit status 2, without a traceback. `--verbosity=1` or
VALLEY_JAX_TRACEBACK=1 shows the traceback as well.
"""

import contextlib
import errno
import os
import sys
from typing import Any, NamedTuple

from absl import flags, logging
from ml_collections import config_flags

from valley_jax import compile_cache, distributed, outputs
from valley_jax.errors import UserError

# Set to 1 to see the traceback of a user error too.
TRACEBACK_ENV = 'VALLEY_JAX_TRACEBACK'
# Exit status of a user error (absl's usage errors exit with 1).
USER_ERROR_STATUS = 2
# OSError numbers that mean the outputs cannot be written (not a bug).
_WRITE_FAULTS = {errno.ENOSPC: 'the disk is full',
                 errno.EDQUOT: 'the disk quota is exceeded',
                 errno.EACCES: 'permission was denied',
                 errno.EPERM: 'permission was denied',
                 errno.EROFS: 'the file system is read-only'}

# The repository's configs/ folder: a main's default config is found there
# wherever python is started; --config paths given by hand are relative to
# the working directory.
CONFIGS = os.path.join(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))), 'configs')


class Flags(NamedTuple):
  """The FlagHolders of a main (overwrite is None where it has none)."""

  config: Any
  workdir: Any
  overwrite: Any
  coordinator_address: Any
  num_processes: Any
  process_id: Any
  process_timeout: Any


def define_flags(config: str, what: str, workdir: str, workdir_help: str, *,
                 overwrite: bool = True) -> Flags:
  """Defines --config, --workdir, [--overwrite] and the multi-process flags.

  Args:
    config: the default config file's name in configs/.
    what: what the config is, for --help ('Training', 'Probe', 'Fed').
    workdir: the default --workdir.
    workdir_help: what goes into --workdir.
    overwrite: whether the main takes --overwrite.

  Returns:
    The flag holders.
  """
  cfg = config_flags.DEFINE_config_file(
      'config', os.path.join(CONFIGS, config), f'{what} config file '
      '(get_config).')
  wd = flags.DEFINE_string('workdir', workdir, workdir_help)
  ow = flags.DEFINE_bool(
      'overwrite', False, 'Replace a run of a different config in '
      '--workdir.') if overwrite else None
  return Flags(cfg, wd, ow, *distributed.define_flags())


def start(holders: Flags):
  """The common start of a main; returns the config.

  Args:
    holders: the main's flags (define_flags).

  Returns:
    config (the ConfigDict of --config with its overrides).
  """
  distributed.initialize(holders.coordinator_address.value,
                         holders.num_processes.value,
                         holders.process_id.value,
                         holders.process_timeout.value)
  if not flags.FLAGS['verbosity'].present:
    logging.set_verbosity(logging.WARNING)  # Orbax logs every save at INFO.
  check_repeated_flags(sys.argv[1:])
  config = holders.config.value
  for field, value in [('--workdir', holders.workdir.value),
                       *_strings(config.to_dict(), 'config')]:
    outputs.check_storage(value, field)  # gs:// without gcsfs, before work.
  # A rerun loads its executables from disk instead of compiling them.
  compile_cache.enable(config.get('compile_cache', 'default'))
  return config


def check_repeated_flags(argv: list[str]) -> None:
  """UserError if a --config.<field> flag is given twice: ml_collections
  concatenates a tuple given twice (a wrapper's default and the user's
  flag would double a table's seeds) and keeps the last of anything else.

  >>> check_repeated_flags(['--config.seed=1', '--config.rounds=2'])
  """
  seen = set()
  for arg in argv:
    if not arg.startswith('--config.'):
      continue
    name = arg.split('=', 1)[0]
    if name in seen:
      raise UserError(f'{name} is given twice; give each --config field '
                      'once (a tuple given twice would be concatenated).')
    seen.add(name)


def _strings(tree: Any, prefix: str) -> list[tuple[str, str]]:
  """(dotted field, value) of every string in a nested config dict."""
  if isinstance(tree, dict):
    return [p for k, v in tree.items() for p in _strings(v, f'{prefix}.{k}')]
  if isinstance(tree, (list, tuple)):
    return [p for i, v in enumerate(tree)
            for p in _strings(v, f'{prefix}[{i}]')]
  return [(prefix, tree)] if isinstance(tree, str) else []


def _write_fault(e: BaseException) -> OSError | None:
  """The OSError of a full disk or a refused write behind `e`, if any (Orbax
  and TensorStore wrap it in their own exceptions)."""
  seen = set()
  while e is not None and id(e) not in seen:
    seen.add(id(e))
    if isinstance(e, OSError) and e.errno in _WRITE_FAULTS:
      return e
    e = e.__cause__ or e.__context__
  return None


def _show_traceback() -> bool:
  if os.environ.get(TRACEBACK_ENV, '') not in ('', '0'):
    return True
  v = flags.FLAGS['verbosity']
  return v.present and v.value >= 1


@contextlib.contextmanager
def boundary():
  """Turns a user error into a message on stderr and exit status 2.

  A `UserError` prints its own message (what, where, the fix). A full disk
  or a refused write says so and that nothing finished was lost: every
  output is written atomically and a run resumes from its last checkpoint
  when started again with the same command. Any other exception keeps its
  traceback.

  Yields:
    None.
  """
  try:
    yield
  except UserError as e:
    if _show_traceback():
      raise
    _stop(str(e))
  except Exception as e:  # pylint: disable=broad-except
    fault = _write_fault(e)
    if fault is None or _show_traceback():
      raise
    where = f' ({fault.filename})' if fault.filename else ''
    _stop(f'Could not write{where}: {_WRITE_FAULTS[fault.errno]}. Nothing '
          'finished was lost (outputs and checkpoints are written whole or '
          'not at all). Free space or fix the permissions, then run the same '
          'command again: it resumes from the last checkpoint.')


def _stop(message: str) -> None:
  sys.stderr.write(f'Error: {message}\n(--verbosity=1 or '
                   f'{TRACEBACK_ENV}=1 shows where it was raised.)\n')
  sys.stderr.flush()
  raise SystemExit(USER_ERROR_STATUS)
