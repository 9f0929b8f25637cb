"""Small VGG-style CNN with BN on sklearn digits: the embedded default.

python train.py --config=configs/digits_cnn.py --workdir=runs/default
About 20 s on 2 CPU cores; about 97-98% test accuracy.
Variants: --config=configs/digits_cnn.py:bninit_gaussian (or lr0.1, bs32, ...).
"""

from valley_jax import defaults


def get_config(arg: str | None = None):
  c = defaults.train_config('cnn', 'digits')
  c.model.width = 0.5
  c.data.augment = False
  c.optim.lr = 0.05
  c.train.epochs = 30
  c.train.batch_size = 64
  c.train.eval_batch_size = 360
  c.train.keep_epochs = (1, 2, 3, 5, 10, 20)
  return defaults.apply_variant(c, arg)
