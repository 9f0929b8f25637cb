"""MLP on sklearn digits, with BN (default) or without (arg 'nobn').

python train.py --config=configs/digits_mlp.py --workdir=runs/digits_mlp_bn
python train.py --config=configs/digits_mlp.py:nobn --workdir=runs/digits_mlp
About 10 s on 2 CPU cores; about 97% test accuracy.
"""

from valley_jax import defaults


def get_config(arg: str | None = None):
  c = defaults.train_config('mlp', 'digits', hidden=(256, 256))
  c.data.augment = False
  c.optim.lr = 0.05
  c.train.epochs = 30
  c.train.batch_size = 64
  c.train.eval_batch_size = 360
  c.train.keep_epochs = (1, 2, 3, 5, 10, 20)
  return defaults.apply_variant(c, arg)
