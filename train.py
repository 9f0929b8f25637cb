"""Trains a model of the registry: python train.py --config=configs/X.py."""

from absl import app

from valley_jax import cli
from valley_jax.train import runner

_FLAGS = cli.define_flags('digits_cnn.py', 'Training', 'runs/default',
                          'Checkpoints and metrics (local or gs://).')


def main(argv):
  del argv
  with cli.boundary():
    config = cli.start(_FLAGS)
    runner.run(config, _FLAGS.workdir.value,
               overwrite=_FLAGS.overwrite.value)


if __name__ == '__main__':
  app.run(main, flags_parser=cli.parse_flags)
