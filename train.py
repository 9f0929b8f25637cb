"""Trains a model of the registry with exact resume.

  python train.py                                   # digits CNN -> runs/default
  python train.py --config=configs/cifar10_resnet20.py --workdir=gs://b/r
  python train.py --config.train.epochs=5 --config.seed=1

Writes Orbax checkpoints and metrics.jsonl to --workdir; rerunning the same
command resumes. Config fields: docs/config-fields.md; guide: docs/training.md.
"""

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
  app.run(main)
