"""Valley studies of trained checkpoints.

  python probe.py                       # digits CNN: Figs 3-5
  python probe.py --config=configs/probe_interpolate.py:digits --workdir=runs/i
  python probe.py --config.seeds=5      # more noise draws per direction

With no flags it trains the digits CNN into runs/default (if needed) and
writes results.json and figure.png per study under --workdir. Config fields:
docs/config-fields.md; every figure's command: docs/reproduce.md.
"""

from absl import app, flags

from valley_jax import cli
from valley_jax.probe import runner

_FLAGS = cli.define_flags('probe_default.py', 'Probe', 'runs/default/probe',
                          'Where results and figures go.', overwrite=False)
_WEIGHTS = flags.DEFINE_string(
    'weights', '', 'A torchvision state dict (.safetensors, .npz, .pth) to '
    'probe instead of config.checkpoint, in the model of config.train '
    '(sets config.weights).')


def main(argv):
  del argv
  with cli.boundary():
    config = cli.start(_FLAGS)
    if _WEIGHTS.value:
      with config.unlocked():
        config.weights = _WEIGHTS.value
    runner.run(config, _FLAGS.workdir.value)


if __name__ == '__main__':
  app.run(main, flags_parser=cli.parse_flags)
