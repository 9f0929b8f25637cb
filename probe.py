"""Valley studies of trained checkpoints: python probe.py --config=configs/X.py.

With no flags: trains the digits CNN (if needed) and runs noise_types,
sign_ratio and special on it.
"""

from absl import app, flags, logging
from ml_collections import config_flags

from valley_jax import probe_lib

_CONFIG = config_flags.DEFINE_config_file(
    'config', 'configs/probe_default.py', 'Probe config file (get_config).')
_WORKDIR = flags.DEFINE_string(
    'workdir', 'runs/default/probe', 'Where results and figures go.')


def main(argv):
  del argv
  if not flags.FLAGS['verbosity'].present:
    logging.set_verbosity(logging.WARNING)  # Orbax logs every save at INFO.
  probe_lib.run(_CONFIG.value, _WORKDIR.value)


if __name__ == '__main__':
  app.run(main)
