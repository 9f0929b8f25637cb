"""ViT (12 layers, 8 heads, dim 128) on Food101 at 64x64, AdamW 1e-4 (paper Appendix A).

python train.py --config=configs/food101_vit.py --workdir=runs/food101_vit
Variants (Sect. 4.2): --config=configs/food101_vit.py:lr0.1 (lr0.003, bs32, bs2048,
wd1e-3, wd1e-5, bninit_uniform, bninit_gaussian, half0/half1, seedN).
Needs the TFDS dataset prepared (see README); 200 epochs on one GPU.
"""

from valley_jax import defaults


def get_config(arg: str | None = None):
  c = defaults.train_config('vit', 'food101')
  c.model.kwargs.patch_size = 8
  c.data.kwargs.image_size = 64
  c.optim.name = 'adamw'
  c.optim.lr = 1e-4
  return defaults.apply_variant(c, arg)
