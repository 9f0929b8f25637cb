"""compile_cache.py: JAX's persistent compilation cache in a folder."""

import jax
import jax.numpy as jnp
import pytest

from valley_jax import compile_cache


def test_compile_cache_dir(tmp_path, monkeypatch):
  monkeypatch.setenv(compile_cache.ENV, str(tmp_path / 'env'))
  assert compile_cache.default_dir() == str(tmp_path / 'env')
  try:
    path = compile_cache.enable('default', min_compile_secs=0)
    assert path == str(tmp_path / 'env')
    jax.jit(lambda a: a * 3.0 + 1.0)(jnp.arange(7.0)).block_until_ready()
    assert any((tmp_path / 'env').iterdir())
  finally:
    assert compile_cache.enable('none') is None
  assert jax.config.jax_compilation_cache_dir is None
  with pytest.raises(ValueError, match='compile_cache'):
    compile_cache.check(3)
