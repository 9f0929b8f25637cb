"""Federated simulation of seven algorithms, FedSign among them.

  python fedsim.py                                  # FedAvg on digits
  python fedsim.py --config=configs/fed_digits.py:fedavg,alpha0.5
  python fedsim.py --config=configs/fed_digits.py:table,seed0,seed1

With --config.mode=table (or the config variant `:table`) it runs the grid
algorithms × α × grid values × seeds of config.table, selects a grid value per
(algorithm, α) and writes Table 1's layout. Config fields:
docs/config-fields.md; guide: docs/fedsim.md.
"""

from absl import app

from valley_jax import cli
from valley_jax.fed import runner

_FLAGS = cli.define_flags('fed_digits.py', 'Fed', 'runs/fed_digits',
                          'Checkpoints, metrics and results (local or '
                          'gs://).')


def main(argv):
  del argv
  with cli.boundary():
    config = cli.start(_FLAGS)
    runner.main(config, _FLAGS.workdir.value,
               overwrite=_FLAGS.overwrite.value)


if __name__ == '__main__':
  app.run(main, flags_parser=cli.parse_flags)
