"""Config-free math on parameter pytrees: no module here reads a config.

tree (pytree math), groups (parameter groups), directions (noise
directions), normalize (NS, filter, layer, adaptive), sweep (the compiled
sweep engine; public path valley_jax.landscape), steps (TrainState,
optimisers, train/eval steps), hessian (HVPs, curvature along directions,
Hutchinson, power iteration, Lanczos), theory (the paper's Sect. 5 demos).
"""
