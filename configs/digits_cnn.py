"""Small VGG-style CNN with BN on sklearn digits: the embedded default.

python train.py --config=configs/digits_cnn.py --workdir=runs/default
About 15 s on 2 CPU cores; 98.9% test accuracy (2026-11-23).
Variants: --config=configs/digits_cnn.py:bninit_gaussian (or lr0.1, bs32, ...).
"""

from valley_jax import defaults


def get_config(arg: str | None = None):
  return defaults.digits_cnn(arg)
