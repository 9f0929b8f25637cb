"""Trains a model of the registry: python train.py --config=configs/X.py."""

import os

from absl import app, flags, logging
from ml_collections import config_flags

from valley_jax import compile_cache, distributed, train_lib

# The default config is found beside this file, wherever python is started;
# --config paths given by hand are relative to the working directory.
_HERE = os.path.dirname(os.path.abspath(__file__))
_CONFIG = config_flags.DEFINE_config_file(
    'config', os.path.join(_HERE, 'configs', 'digits_cnn.py'),
    'Training config file (get_config).')
_WORKDIR = flags.DEFINE_string('workdir', 'runs/default',
                               'Checkpoints and metrics (local or gs://).')
_OVERWRITE = flags.DEFINE_bool(
    'overwrite', False, 'Replace a run of a different config in --workdir.')

_COORDINATOR, _NUM_PROCESSES, _PROCESS_ID = distributed.define_flags()


def main(argv):
  del argv
  # Before anything touches a device: join the other processes, if any.
  distributed.initialize(_COORDINATOR.value, _NUM_PROCESSES.value,
                         _PROCESS_ID.value)
  if not flags.FLAGS['verbosity'].present:
    logging.set_verbosity(logging.WARNING)  # Orbax logs every save at INFO.
  # A rerun loads its executables from disk instead of compiling them.
  compile_cache.enable(_CONFIG.value.get('compile_cache', 'default'))
  train_lib.run(_CONFIG.value, _WORKDIR.value, overwrite=_OVERWRITE.value)


if __name__ == '__main__':
  app.run(main)
