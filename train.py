"""Trains a model of the registry: python train.py --config=configs/X.py."""

from absl import app, flags, logging
from ml_collections import config_flags

from valley_jax import train_lib

_CONFIG = config_flags.DEFINE_config_file(
    'config', 'configs/digits_cnn.py', 'Training config file (get_config).')
_WORKDIR = flags.DEFINE_string('workdir', 'runs/default',
                               'Checkpoints and metrics (local or gs://).')
_OVERWRITE = flags.DEFINE_bool(
    'overwrite', False, 'Replace a run of a different config in --workdir.')


def main(argv):
  del argv
  if not flags.FLAGS['verbosity'].present:
    logging.set_verbosity(logging.WARNING)  # Orbax logs every save at INFO.
  train_lib.run(_CONFIG.value, _WORKDIR.value, overwrite=_OVERWRITE.value)


if __name__ == '__main__':
  app.run(main)
