"""train.py's runner (valley_jax.train.runner.run)."""
