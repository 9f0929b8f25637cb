"""checkpoint.py: restoring kept epochs, checksums, damaged files."""

import glob
import json
import os
import pathlib
import shutil

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest
from conftest import tiny_train_config

from valley_jax import checkpoint, models
from valley_jax.core import steps
from valley_jax.train import runner as train_runner


def _copy(src, tmp_path):
  dst = str(tmp_path / 'copy')
  shutil.copytree(src, dst)
  return dst


@pytest.mark.slow
def test_restore_model_round_trip(trained_mlp):
  v0, cfg = checkpoint.restore_model(trained_mlp, 0)
  v3, _ = checkpoint.restore_model(trained_mlp, 'last')
  assert cfg['model']['name'] == 'mlp'
  assert set(v3) == {'params', 'batch_stats'}
  # Epoch 0 is the initialisation: BN scales are still ones.
  np.testing.assert_array_equal(v0['params']['bn1']['scale'], 1.0)
  assert not np.allclose(v3['params']['head']['kernel'],
                         v0['params']['head']['kernel'])
  # The restored model reproduces the logged test accuracy.
  rows = [json.loads(l) for l in open(f'{trained_mlp}/metrics.jsonl')]
  from valley_jax import data, sharding  # pylint: disable=g-import-not-at-top
  c = tiny_train_config()
  ds = data.from_config(c.data)
  model = models.from_config(c.model, ds.num_classes, ds.input_shape)
  acc = steps.evaluate(
      jax.jit(steps.make_eval_step(model, ds.mean, ds.std)),
      sharding.make_mesh(1), v3['params'], v3['batch_stats'], ds.x_test,
      ds.y_test, 120)['accuracy']
  assert acc == pytest.approx(rows[-1]['test_accuracy'])


@pytest.mark.slow
def test_missing_epoch_is_a_clear_error(trained_mlp, tmp_path):
  with pytest.raises(FileNotFoundError, match=r'kept epochs: \[0, 1, 2, 3\]'):
    checkpoint.restore_model(trained_mlp, 7)
  with pytest.raises(FileNotFoundError, match='train first'):
    checkpoint.restore_model(str(tmp_path), 'last')


@pytest.mark.slow
def test_checksums_tell_dtype_and_shape_apart():
  """The same 8 zero bytes as 2 float32, 2 int32 or a 1x2 float32 array
  are three different arrays."""
  sums = [checkpoint.checksums({'w': a})['w'] for a in (
      np.zeros(2, np.float32), np.zeros(2, np.int32),
      np.zeros((1, 2), np.float32))]
  assert len(set(sums)) == 3


def test_checksum_detects_silently_changed_arrays(run2, tmp_path):
  w = _copy(run2, tmp_path)
  # Replace epoch 2's arrays by readable but different ones, as a damaged
  # disk or a partial copy could; the stored checksums stay as they were.
  variables, _ = checkpoint.restore_model(w, 2)
  changed = jax.tree.map(lambda a: np.asarray(a) + 1.0, variables)
  model_dir = pathlib.Path(w, 'checkpoints', '2', 'model')
  shutil.rmtree(model_dir)
  with ocp.StandardCheckpointer() as ckptr:
    ckptr.save(model_dir, changed)
  with pytest.raises(checkpoint.CheckpointError,
                     match=r'epoch 2 .* is damaged.*Kept earlier epochs: '
                     r'\[0, 1\]'):
    checkpoint.restore_model(w)
  with pytest.raises(checkpoint.CheckpointError, match='epoch 2'):
    train_runner.run(tiny_train_config(epochs=2), w)
  np.testing.assert_array_equal(  # Epoch 1 still restores.
      checkpoint.restore_model(w, 1)[0]['params']['head']['kernel'],
      checkpoint.restore_model(run2, 1)[0]['params']['head']['kernel'])


def test_verify_names_the_changed_leaf():
  tree = {'params': {'a': np.zeros(3), 'b': np.ones(2)}}
  sums = checkpoint.checksums(tree)
  tree['params']['b'] = np.array([1.0, 1.0 + 1e-12])
  with pytest.raises(checkpoint.CheckpointError, match="'params/b'"):
    checkpoint.verify(tree, sums, 'here')


# ------------------------------------------------ 8. damaged checkpoint files


@pytest.mark.slow
@pytest.mark.parametrize('item', ['model', 'config'])
def test_flipped_or_truncated_files_give_clear_error(run2, tmp_path, item):
  w = _copy(run2, tmp_path)
  files = [f for f in glob.glob(f'{w}/checkpoints/2/{item}/**',
                                recursive=True)
           if os.path.isfile(f) and 'commit_success' not in f]
  for f in files:  # Damage every file of the item: truncation or flips.
    data = bytearray(pathlib.Path(f).read_bytes())
    mid = len(data) // 2
    data[mid:mid + 40] = bytes(b ^ 0xFF for b in data[mid:mid + 40])
    pathlib.Path(f).write_bytes(bytes(data[:max(len(data) - 7, 1)]))
  with pytest.raises(checkpoint.CheckpointError,
                     match=r'Checkpoint epoch 2 in .*copy.*Kept earlier '
                     r'epochs: \[0, 1\]'):
    checkpoint.restore_model(w)
