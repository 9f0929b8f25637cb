"""Figs 6 and 20 on ImageNet: noise on parameter groups of pre-trained
ResNeXt101 (the paper's Fig. 6, the default) and ResNet50 (its Fig. 20, arg
`resnet50`).

Save torchvision's weights (IMAGENET1K_V1, as `pretrained=True` gave) once,
where PyTorch and safetensors are installed:
  python -c "import torchvision; from safetensors.torch import save_file; \
    save_file(torchvision.models.resnext101_32x8d(weights='IMAGENET1K_V1') \
    .state_dict(), 'weights/resnext101_32x8d.safetensors')"
Probing it needs only `pip install 'valley_jax[weights]'` (.npz needs
nothing, .pth needs PyTorch):
  python probe.py --config=configs/probe_imagenet_fig6.py \
    --weights=weights/resnext101_32x8d.safetensors \
    --workdir=runs/imagenet_fig6 --config.train.data.data_dir=DIR
(DIR: `tfds build imagenet2012 --file_format=array_record`). Fig. 20:
  python probe.py --config=configs/probe_imagenet_fig6.py:resnet50 \
    --weights=weights/resnet50.safetensors --workdir=runs/imagenet_fig20 \
    --config.train.data.data_dir=DIR

Groups ALL, CLF, FEAT, LAYER1, CONV, BN, each with plain and sign-consistent
Gaussian noise (12 curves, cross-entropy and error), 41 λ points in [-1, 1],
on a fixed seeded subset of 5,000 validation images (Resize 256, CenterCrop
224, ImageNet mean/std; valley_jax/data/sources.py) read through
tfds.data_source, with BN recalibrated per point on 2,000 training images.
bfloat16 compute. The 2,000 recalibration images are held on the device;
the 5,000 evaluation images stay in host memory and are streamed to it 4
batches of 250 at a time (config.sweep.stream_batches), each point
recalibrated once. On a GPU with room for all of them (0.75 GB as uint8),
--config.sweep.stream_batches=0 keeps them on the device.
"""

from valley_jax import defaults
from valley_jax.core import groups


def get_config(arg: str | None = None):
  c = defaults.probe_config(checkpoint_dir='')
  c.kind = 'groups'
  # The state dict probed instead of a checkpoint (probe.py --weights=...).
  name = arg or 'resnext101_32x8d'
  c.weights = f'weights/{name}.safetensors'
  c.train = defaults.train_config(name, 'imagenet2012')
  c.train.data.augment = False
  c.groups.groups = groups.GROUPS
  c.groups.noise = 'gaussian'
  c.sweep.dtype = 'bfloat16'
  c.sweep.eval_batch_size = 250
  c.sweep.recal_batch_size = 250
  c.sweep.recal_samples = 2000
  c.sweep.stream_batches = 4
  return c
