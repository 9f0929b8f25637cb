"""AlexNet on Food101 at 64x64 (paper Appendix A).

python train.py --config=configs/food101_alexnet.py --workdir=runs/food101_alexnet
Variants (Sect. 4.2): --config=configs/food101_alexnet.py:lr0.1 (lr0.003, bs32, bs2048,
wd1e-3, wd1e-5, bninit_uniform, bninit_gaussian, half0/half1, seedN).
Needs the TFDS dataset prepared (see README); 200 epochs on one GPU.
"""

from valley_jax import defaults


def get_config(arg: str | None = None):
  c = defaults.train_config('alexnet', 'food101')
  c.model.bn = False
  c.data.kwargs.image_size = 64  # Images resized (shorter side) and centre-cropped.
  return defaults.apply_variant(c, arg)
