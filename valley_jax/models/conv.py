"""A 2D convolution whose gradients XLA:CPU runs fast inside loops.

JAX differentiates a convolution into two more convolutions with permuted
dimension numbers (the kernel gradient is ``f01b_i01o->01bf`` for NHWC/HWIO).
XLA:CPU rewrites such convolutions into its fast (Eigen/library) form only in
the top-level computation; inside a `lax.scan` or `lax.map` body they stay as
they are and run as a naive element loop. Measured on 2 CPU cores (jax
0.10.2, 2026-12-01): the kernel gradient of one 3×3, 32→32-channel conv over
64 32×32 images took 0.04 s in a plain jit and 3.1 s inside a scan; a CIFAR
ResNet20 train step was 7× slower in a scan. The FedSim engine runs every
client's local steps in a scan, so it met this on every step.

`conv_general_dilated` here is a drop-in for `lax.conv_general_dilated` (the
registry's convolutions pass it to `flax.linen.Conv`). Inside a
`fast_cpu_gradients()` context it has the same forward pass and a custom VJP
that writes both gradients as convolutions in the canonical NHWC/HWIO->NHWC
form, with explicit transposes, which XLA:CPU runs through its fast path
anywhere; the FedSim local step traces its gradient in that context. The
custom VJP applies on the CPU backend to plain 2D NHWC convolutions (no
dilation, one feature group). Everywhere else, and outside the context, it
calls `lax.conv_general_dilated` unchanged: a custom VJP rules out
forward-mode differentiation, which the Hessian-vector products of
`valley_jax.core.hessian` use. The gradients are the same sums in a different
order (equal to float rounding; tests/test_conv.py).
"""

import contextlib
import contextvars
from typing import Any, Sequence

import jax
import jax.numpy as jnp
from jax import lax

_DN = ('NHWC', 'HWIO', 'NHWC')
_FAST = contextvars.ContextVar('valley_jax_fast_cpu_gradients', default=False)


@contextlib.contextmanager
def fast_cpu_gradients():
  """Convolutions traced in this context get the canonical-form VJP.

  Only reverse-mode differentiation (jax.grad, jax.vjp) of them works inside
  it; trace forward-mode code (jax.jvp, Hessian-vector products) outside.

  Yields:
    None.
  """
  token = _FAST.set(True)
  try:
    yield
  finally:
    _FAST.reset(token)


def _conv(x, w, strides, pads, precision=None, lhs_dilation=(1, 1),
          rhs_dilation=(1, 1)):
  return lax.conv_general_dilated(
      x, w, strides, pads, lhs_dilation=lhs_dilation,
      rhs_dilation=rhs_dilation, dimension_numbers=_DN, precision=precision)


def _input_grad_pads(n, k, s, lo, m):
  """Padding of the stride-dilated output gradient for the input gradient.

  The forward pass read input rows -lo .. ; the transposed convolution of the
  output gradient (dilated by s) with the flipped kernel must give n rows.
  """
  before = k - 1 - lo
  after = n + k - 1 - ((m - 1) * s + 1) - before
  return before, after


def _make(strides: tuple[int, int], pads: tuple[tuple[int, int], ...],
          precision):

  @jax.custom_vjp
  def conv(x, w):
    return _conv(x, w, strides, pads, precision)

  def fwd(x, w):
    return conv(x, w), (x, w)

  def bwd(res, g):
    x, w = res
    kh, kw = w.shape[:2]
    m = g.shape[1:3]
    # Input gradient: g dilated by the stride, full-correlated with the
    # spatially flipped kernel whose in/out features are swapped.
    w_t = jnp.flip(w, (0, 1)).transpose(0, 1, 3, 2)
    gpads = [_input_grad_pads(n, k, s, lo, mm) for n, k, s, (lo, _), mm in
             zip(x.shape[1:3], (kh, kw), strides, pads, m)]
    dx = _conv(g, w_t, (1, 1), gpads, precision, lhs_dilation=strides)
    # Kernel gradient: a convolution with the input channels as the batch,
    # the images as the features and the output gradient as the kernel
    # (dilated by the stride); the high padding trims to the kernel size.
    kpads = [(lo, k + (mm - 1) * s - n - lo) for n, k, s, (lo, _), mm in
             zip(x.shape[1:3], (kh, kw), strides, pads, m)]
    dw = _conv(x.transpose(3, 1, 2, 0), g.transpose(1, 2, 0, 3), (1, 1),
               kpads, precision, rhs_dilation=strides)
    return dx.astype(x.dtype), dw.transpose(1, 2, 0, 3).astype(w.dtype)

  conv.defvjp(fwd, bwd)
  return conv


def _is_nhwc(dimension_numbers, lhs_shape, rhs_shape) -> bool:
  """Whether the dimension numbers (strings or numbers) are NHWC/HWIO."""
  if dimension_numbers is None:
    return False
  nhwc = lax.conv_dimension_numbers(lhs_shape, rhs_shape, _DN)
  given = lax.conv_dimension_numbers(lhs_shape, rhs_shape, dimension_numbers)
  return given == nhwc


def conv_general_dilated(lhs, rhs, window_strides: Sequence[int],
                         padding: Any, lhs_dilation=None, rhs_dilation=None,
                         dimension_numbers=None, feature_group_count: int = 1,
                         batch_group_count: int = 1, precision=None,
                         preferred_element_type=None) -> jax.Array:
  """`lax.conv_general_dilated`; CPU-friendly gradients in
  `fast_cpu_gradients()` (module doc)."""
  custom = (_FAST.get() and jax.default_backend() == 'cpu'
            and lhs.ndim == 4 and lhs.dtype == rhs.dtype
            and _is_nhwc(dimension_numbers, lhs.shape, rhs.shape)
            and set(lhs_dilation or (1,)) == set(rhs_dilation or (1,)) == {1}
            and feature_group_count == batch_group_count == 1
            and preferred_element_type is None)
  if not custom:
    return lax.conv_general_dilated(
        lhs, rhs, window_strides, padding, lhs_dilation=lhs_dilation,
        rhs_dilation=rhs_dilation, dimension_numbers=dimension_numbers,
        feature_group_count=feature_group_count,
        batch_group_count=batch_group_count, precision=precision,
        preferred_element_type=preferred_element_type)
  strides = tuple(int(s) for s in window_strides)
  if isinstance(padding, str):
    padding = lax.padtype_to_pads(lhs.shape[1:3], rhs.shape[:2], strides,
                                  padding)
  pads = tuple((int(lo), int(hi)) for lo, hi in padding)
  return _make(strides, pads, precision)(lhs, rhs)
