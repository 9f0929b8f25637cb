"""What the three mains share: their flags and the start of every run.

train.py, probe.py and fedsim.py each define their flags with `define_flags`
and begin `main` with `start`, which joins the other processes of a
multi-process run (before anything touches a device), quiets Orbax's INFO
logging unless --verbosity was given, and turns on the persistent
compilation cache of config.compile_cache.
"""

import os
from typing import Any, NamedTuple

from absl import flags, logging
from ml_collections import config_flags

from valley_jax import compile_cache, distributed

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
                         holders.process_id.value)
  if not flags.FLAGS['verbosity'].present:
    logging.set_verbosity(logging.WARNING)  # Orbax logs every save at INFO.
  config = holders.config.value
  # A rerun loads its executables from disk instead of compiling them.
  compile_cache.enable(config.get('compile_cache', 'default'))
  return config
