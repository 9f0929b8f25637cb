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

import ast
import contextlib
import errno
import os
import re
import sys
from typing import Any, NamedTuple

from absl import flags, logging
from ml_collections import config_flags

from valley_jax import compile_cache, distributed, outputs, preemption
from valley_jax.errors import InputError, UserError

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

# The flags this module defines belong to the main that asks for them: absl
# then lists them in the main's --help (not only in --helpfull).
flags.disclaim_key_flags()


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
  _take_open_overrides(sys.argv)
  try:
    cfg = config_flags.DEFINE_config_file(
        'config', os.path.join(CONFIGS, config),
        f'{what} config file (a get_config() file), optionally with a '
        'variant: --config=configs/FILE.py:VARIANT. Override any field with '
        '--config.FIELD=VALUE (e.g. --config.seed=1); docs/config-fields.md '
        'lists every field with its range.')
  except Exception as e:  # pylint: disable=broad-except
    _config_error(e, sys.argv)
  wd = flags.DEFINE_string('workdir', workdir, workdir_help)
  ow = flags.DEFINE_bool(
      'overwrite', False, 'Replace a run of a different config in '
      '--workdir.') if overwrite else None
  out = Flags(cfg, wd, ow, *distributed.define_flags())
  for name in ('config', 'workdir', 'overwrite', 'coordinator_address',
               'num_processes', 'process_id', 'process_timeout'):
    if name in flags.FLAGS:
      flags.declare_key_flag(name)
  return out


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
    quiet_write_fault_logs()
  check_repeated_flags(sys.argv[1:])
  try:
    config = holders.config.value
    config.keys()  # A file that did not load raises on first use.
  except Exception as e:  # pylint: disable=broad-except
    _config_error(e, sys.argv)
  apply_open_overrides(config)
  check_paths([('--workdir', holders.workdir.value),
               *_strings(config.to_dict(), 'config')])
  # A rerun loads its executables from disk instead of compiling them.
  compile_cache.enable(config.get('compile_cache', 'default'))
  return config


# Config dicts that start empty or hold only some keys, so that a flag may
# add a key (ml_collections refuses to set a field that does not exist):
# an algorithm's hyperparameters and a table's grids. Their names and values
# are checked by the runner like any other.
OPEN_FIELDS = ('fed.hparams', 'table.hparams', 'table.grids')
_open_overrides: list[tuple[str, str, str]] = []  # (flag, dotted key, value)


def _take_open_overrides(argv: list[str]) -> None:
  """Removes --config.<OPEN_FIELDS>.KEY=VALUE (or 'KEY VALUE') from argv
  (in place), to be set by apply_open_overrides once the config is loaded."""
  heads = tuple(f'--config.{f}.' for f in OPEN_FIELDS)
  i = 1
  while i < len(argv):
    arg = argv[i]
    if not arg.startswith(heads):
      i += 1
      continue
    name, eq, value = arg.partition('=')
    if not eq and i + 1 < len(argv):
      value = argv.pop(i + 1)
    _open_overrides.append((arg, name[len('--config.'):], value))
    argv.pop(i)


def _literal(text: str) -> Any:
  """A flag value as Python: a number, tuple, bool or None where it reads
  as one, else the string.

  >>> _literal('0.1'), _literal('(1, 2)'), _literal('sum')
  (0.1, (1, 2), 'sum')
  """
  try:
    return ast.literal_eval(text)
  except (ValueError, SyntaxError):
    return text


def apply_open_overrides(config) -> None:
  """Sets the --config.fed.hparams.KEY=VALUE flags (and the other
  OPEN_FIELDS) taken out of argv by define_flags.

  Args:
    config: the loaded ConfigDict (locked or not).
  """
  for flag, key, text in _open_overrides:
    *parents, leaf = key.split('.')
    node = config
    try:
      for p in parents:
        node = node[p]
    except (KeyError, TypeError):
      raise InputError(f'{flag}: the config has no field '
                       f'{".".join(parents)!r} to hold {leaf!r}.') from None
    value = _literal(text)
    if leaf in node and isinstance(node[leaf], str):
      value = text
    try:
      with node.unlocked():
        node[leaf] = value
    except (TypeError, ValueError) as e:
      raise InputError(f'{flag}: {e}') from None


def parse_flags(argv: list[str]) -> list[str]:
  """absl's flag parsing with --config errors sent through the boundary:
  a missing or broken config file, an unknown variant, an unknown field
  (--config.train.epoch=3) or a bad value ends with 'Error: ...' and exit
  status 2, not absl's 'FATAL Flags parsing error' and a traceback.
  For app.run(main, flags_parser=cli.parse_flags).

  Args:
    argv: the command line.

  Returns:
    The arguments left after the flags.
  """
  try:
    return flags.FLAGS(argv)
  except BrokenPipeError:
    # `--help | head`: the reader left. Nothing went wrong with --config;
    # send what is still buffered nowhere and exit as absl's help does.
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    raise SystemExit(1) from None
  except Exception as e:  # pylint: disable=broad-except
    _config_error(e, argv)


def _chain(e: BaseException) -> list[BaseException]:
  out = []
  while e is not None and e not in out:
    out.append(e)
    e = e.__cause__ or e.__context__
  return out


def _flag_of(argv: list[str], key: str = '') -> str:
  """The --config argument of argv that names `key` (or the file)."""
  for a in argv[1:]:
    if key and a.startswith('--config.') and (
        a.split('=', 1)[0].split('.')[-1] == key):
      return a
    if not key and a.startswith('--config='):
      return a
  return '--config' if not key else f'--config.…{key}'


def _config_message(e: BaseException, argv: list[str]) -> str:
  """What went wrong in loading --config, and the fix."""
  chain = _chain(e)
  users = [c for c in chain if isinstance(c, UserError)]
  if users:
    return f'{_flag_of(argv)}: {str(users[-1]).strip()}'
  for c in chain:
    m = re.search(r'Did you mean "(\w+)" instead of "(\w+)"', str(c))
    if m:
      return (f'{_flag_of(argv, m.group(2))}: the config has no field '
              f'{m.group(2)!r}; did you mean {m.group(1)!r}?')
  keys = [c for c in chain if isinstance(c, (KeyError, AttributeError))]
  if keys:
    key = str(keys[-1]).strip('"\'\\')
    return (f'{_flag_of(argv, key)}: the config has no field {key!r} (see '
            'the config file, or docs/config-fields.md).')
  missing = [c for c in chain if 'No such file or directory' in str(c)]
  if missing:
    flag = _flag_of(argv)
    path = flag.partition('=')[2].split(':')[0] or '(the default)'
    return (f'{flag}: the config file {path!r} does not exist (paths are '
            f'relative to {os.getcwd()}; the repository\'s are in '
            f'{CONFIGS}).')
  if isinstance(e, flags.Error) and ' Error whilst ' not in str(e):
    return str(e).strip()
  inner = chain[-1]
  lines = [ln for ln in str(inner).strip().splitlines() if ln.strip()]
  return (f'{_flag_of(argv)} does not load: {type(inner).__name__}: '
          f'{lines[-1] if lines else ""}')


def _config_error(e: BaseException, argv: list[str]) -> None:
  if _show_traceback():
    raise e
  _stop(_config_message(e, argv))


# A config string that begins like a URL ('gs://...', 'hdfs://...'); other
# strings holding '://' (a train_runs entry 'runs/x=gs://...') are checked
# by their runner, which knows their parts.
_URL = re.compile(r'[A-Za-z][A-Za-z0-9+.-]*://')


def check_paths(fields: list[tuple[str, str]]) -> None:
  """Before any work: every storage scheme is supported and its package
  installed; each gs:// bucket answers (asked once per bucket).

  Args:
    fields: (flag or config field, value); the first is --workdir, checked
      whatever it holds, the others only where they begin like a URL.
  """
  asked = set()
  for i, (field, value) in enumerate(fields):
    if i and not _URL.match(value):
      continue
    outputs.check_storage(value, field)  # gs:// without gcsfs, hdfs://.
    if outputs.is_remote(value) and outputs.bucket_of(value) not in asked:
      asked.add(outputs.bucket_of(value))
      outputs.check_reachable(value, field)


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


# TensorStore (Orbax's array writer) raises ValueError with an absl status
# code, not an OSError: 'RESOURCE_EXHAUSTED: ... No space left on device'.
_STATUS_FAULTS = {'RESOURCE_EXHAUSTED': 'the disk is full or a storage quota '
                                        'is exceeded',
                  'PERMISSION_DENIED': 'permission was denied'}


class _Fault(NamedTuple):
  reason: str
  filename: str


def _write_fault(e: BaseException) -> _Fault | None:
  """The full disk or refused write behind `e`, if any: an OSError of
  _WRITE_FAULTS, or TensorStore's RESOURCE_EXHAUSTED / PERMISSION_DENIED
  (Orbax wraps both in its own exceptions)."""
  for c in _chain(e):
    if isinstance(c, OSError) and c.errno in _WRITE_FAULTS:
      return _Fault(_WRITE_FAULTS[c.errno], c.filename or '')
    if isinstance(c, (ValueError, RuntimeError)):
      m = re.match(r'\s*(RESOURCE_EXHAUSTED|PERMISSION_DENIED)\b', str(c))
      if m:
        path = re.search(r'["\']((?:gs://|/)[^"\']+)["\']', str(c))
        return _Fault(_STATUS_FAULTS[m.group(1)], path.group(1) if path
                      else '')
  return None


class _DropWriteFaultLogs:
  """A logging filter: Orbax's background threads (and asyncio, for its
  unretrieved tasks) log a write fault with its traceback, dozens of times,
  while the main thread raises it; the boundary reports it once, so these
  records are dropped (records of other errors are kept)."""

  def filter(self, record) -> bool:
    exc = record.exc_info[1] if record.exc_info else None
    return exc is None or _write_fault(exc) is None


def quiet_write_fault_logs() -> None:
  """Installs _DropWriteFaultLogs on absl's handler (once)."""
  handler = logging.get_absl_handler()
  if not any(isinstance(f, _DropWriteFaultLogs) for f in handler.filters):
    handler.addFilter(_DropWriteFaultLogs())


def _show_traceback() -> bool:
  if os.environ.get(TRACEBACK_ENV, '') not in ('', '0'):
    return True
  v = flags.FLAGS['verbosity']
  return v.present and (v.value or 0) >= 1


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
  except preemption.Preempted as e:
    sys.stderr.write(f'{e}\n')
    sys.stderr.flush()
    raise SystemExit(preemption.STATUS) from None
  except UserError as e:
    if _show_traceback():
      raise
    _stop(str(e))
  except Exception as e:  # pylint: disable=broad-except
    fault = _write_fault(e)
    if fault is None or _show_traceback():
      raise
    where = f' ({fault.filename})' if fault.filename else ''
    _stop(f'Could not write{where}: {fault.reason}. Nothing '
          'finished was lost (outputs and checkpoints are written whole or '
          'not at all). Free space or fix the permissions, then run the same '
          'command again: it resumes from the last checkpoint.')


def _stop(message: str) -> None:
  sys.stderr.write(f'Error: {message}\n(--verbosity=1 or '
                   f'{TRACEBACK_ENV}=1 shows where it was raised.)\n')
  sys.stderr.flush()
  raise SystemExit(USER_ERROR_STATUS)
