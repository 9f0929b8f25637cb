"""probe.py: the runner, the Prober and Study interface, the registry and the
studies (valley_jax.probe.studies), one module per family."""
