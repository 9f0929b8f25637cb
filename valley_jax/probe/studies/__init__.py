"""The probe's studies, one module per family; each lists its `STUDIES`.
valley_jax.probe.registry gathers them."""
