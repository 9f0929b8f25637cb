"""MLP with BN on mnist1d (Greydanus 2020, generated locally; 4,000 training
and 1,000 test sequences), trained as the digits runs (30 epochs, batch 64,
LR 0.05); the seedN variant sets the seed.

python train.py --config=configs/mnist1d_mlp.py --workdir=runs/mnist1d_mlp
"""

from valley_jax import defaults


def get_config(arg: str | None = None):
  c = defaults.train_config('mlp', 'mnist1d', hidden=(256, 256))
  c.data.augment = False
  c.optim.lr = 0.05
  c.train.epochs = 30
  c.train.batch_size = 64
  c.train.eval_batch_size = 500
  c.train.keep_epochs = (1, 2, 3, 5, 10, 20)
  return defaults.apply_variant(c, arg)
