"""Fig. 28 (and Appendix D.1) on the paper's network: ResNet20 on SVHN.

Train first (TFDS svhn_cropped prepared, see README; 200 epochs on a GPU):
  python train.py --config=configs/svhn_resnet20.py \
    --workdir=runs/svhn_resnet20 --config.data.data_dir=DIR
Then:
  python probe.py --config=configs/probe_theory_svhn.py \
    --workdir=runs/svhn_resnet20/theory
Pick one with the arg, e.g. configs/probe_theory_svhn.py:activations.
The confusion matrices cover all 19 ReLU layers of ResNet20 (bn_stem, each
block's bn1 and each block's output) on 2,000 test images, for λ = ±0.2 …
±1.0 along NS(|G(0,1)|·sign(θf)) with BN recalibrated per point. Not run
here (no SVHN offline); the digits version is configs/probe_theory.py.
"""

from valley_jax import defaults


def get_config(arg: str | None = None):
  c = defaults.probe_config('runs/svhn_resnet20')
  c.kind = arg or 'activations,gradient'
  c.activations.n_samples = 2000
  c.sweep.eval_batch_size = 1000
  return c
