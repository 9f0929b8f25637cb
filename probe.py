"""Valley studies of trained checkpoints: python probe.py --config=configs/X.py.

With no flags: trains the digits CNN (if needed) and runs noise_types,
sign_ratio and special on it.
"""

import os

from absl import app, flags, logging
from ml_collections import config_flags

from valley_jax import compile_cache, distributed, probe_lib

# The default config is found beside this file, wherever python is started;
# --config paths given by hand are relative to the working directory.
_HERE = os.path.dirname(os.path.abspath(__file__))
_CONFIG = config_flags.DEFINE_config_file(
    'config', os.path.join(_HERE, 'configs', 'probe_default.py'),
    'Probe config file (get_config).')
_WORKDIR = flags.DEFINE_string(
    'workdir', 'runs/default/probe', 'Where results and figures go.')

_WEIGHTS = flags.DEFINE_string(
    'weights', '', 'A torchvision state dict (.safetensors, .npz, .pth) to '
    'probe instead of config.checkpoint, in the model of config.train '
    '(sets config.weights).')
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
  config = _CONFIG.value
  if _WEIGHTS.value:
    with config.unlocked():
      config.weights = _WEIGHTS.value
  probe_lib.run(config, _WORKDIR.value)


if __name__ == '__main__':
  app.run(main)
