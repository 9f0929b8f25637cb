"""Every config file loads, and its model builds for its dataset's shape."""

import glob
import importlib.util

import pytest

from valley_jax import data, models
from valley_jax.fed import runner as fed_runner
from valley_jax.probe import registry
from valley_jax.probe import runner as probe_runner
from valley_jax.train import runner as train_runner

_SHAPES = {'digits': (8, 8, 1), 'mnist1d': (40,), 'cifar10': (32, 32, 3),
           'cinic10': (32, 32, 3),
           'cifar100': (32, 32, 3), 'svhn_cropped': (32, 32, 3)}


def _load(path):
  spec = importlib.util.spec_from_file_location('cfg', path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


@pytest.mark.parametrize('path', sorted(glob.glob('configs/*.py')))
def test_config_builds(path):
  module = _load(path)
  config = module.get_config(None)
  if 'kind' in config:  # A probe config: its names and ranges.
    assert probe_runner.check_names(config)
    return
  if 'fed' in config:  # A fed config: names, ranges, the algorithm.
    fed_runner.validate(config)
  else:
    train_runner.validate(config)
  m = config.model
  shape = _SHAPES.get(config.data.name)
  if shape is None:  # Images resized by the loader.
    size = config.data.kwargs.get('image_size', 224)
    shape = (size, size, 3)
  num_classes = 10 if config.data.name not in data.TFDS else (
      data.TFDS[config.data.name].num_classes)
  model = models.build_model(m.name, num_classes, width=m.width, bn=m.bn,
                             bn_init=m.bn_init, **m.kwargs)
  models.check_input_shape(m.name, model, shape)
  assert models.count_params(model, shape) > 0


def test_imagenet_groups_config_names_figs_6_and_20_as_the_paper():
  """The paper's Fig. 6 is ResNeXt101, its Fig. 20 ResNet50."""
  module = _load('configs/probe_imagenet_fig6.py')
  fig6, fig20 = module.get_config(None), module.get_config('resnet50')
  assert fig6.train.model.name == 'resnext101_32x8d'
  assert fig6.weights == 'weights/resnext101_32x8d.safetensors'
  assert fig20.train.model.name == 'resnet50'
  assert fig20.weights == 'weights/resnet50.safetensors'
  assert 'Fig. 6' in module.__doc__ and 'Fig. 20' in module.__doc__


# The multi-run figures: their default (CIFAR-10) and offline settings.
_RUN_FIGURES = [(f'configs/probe_{name}.py', arg)
                for name in ('bn_init', 'interpolate', 'hparams')
                for arg in (None, 'digits')]


@pytest.mark.parametrize('path,arg', _RUN_FIGURES)
def test_run_figures_name_a_training_config_for_every_run(path, arg):
  """One command per figure: every run the figure measures is named in
  config.train_runs, whose entries load and pass train.py's checks."""
  config = _load(path).get_config(arg)
  kind = probe_runner.kinds_of(config)[0]
  measured = [w for w, _ in registry.STUDIES[kind].checkpoints(config)]
  runs = probe_runner.train_runs(config)
  assert [r.workdir for r in runs] == measured
  for r in runs:
    if r.config.data.name == 'digits':
      # A batch fits in digits' training split (1,437 images, not 2,048).
      n_train = len(data.from_config(r.config.data).y_train)
      assert r.config.train.batch_size <= n_train, r.source
