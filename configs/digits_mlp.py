"""MLP on sklearn digits, with BN (default) or without (arg 'nobn').

python train.py --config=configs/digits_mlp.py --workdir=runs/digits_mlp_bn
python train.py --config=configs/digits_mlp.py:nobn --workdir=runs/digits_mlp
About 10 s on 2 CPU cores.
"""

from valley_jax import defaults


def get_config(arg: str | None = None):
  return defaults.digits_config('mlp', arg, hidden=(256, 256))
