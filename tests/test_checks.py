"""checks.py: every numeric field has a range, the docs list them, the
kinds of field."""

import glob
import math
import os
import pathlib

import ml_collections
import pytest

from valley_jax import checks, defaults
from valley_jax.probe import registry


_ROOT = pathlib.Path(__file__).resolve().parent.parent


def _every_config():
  """The base configs and every config file of configs/."""
  import importlib.util  # pylint: disable=g-import-not-at-top
  out = {'train': defaults.digits_cnn(), 'probe': defaults.probe_config()}
  for f in sorted(glob.glob(str(_ROOT / 'configs' / '*.py'))):
    spec = importlib.util.spec_from_file_location('cfg', f)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    out[os.path.basename(f)] = mod.get_config()
  return out


def test_every_numeric_field_has_a_range():
  for name, cfg in _every_config().items():
    fields = (registry.fields() if 'kind' in cfg else
              checks.FED_FIELDS if 'fed' in cfg else checks.TRAIN_FIELDS)
    assert checks.unchecked(cfg, fields) == [], name
    checks.check(cfg, fields)  # The shipped configs pass their checks.


def test_docs_list_the_checked_fields():
  doc = (_ROOT / 'docs' / 'config-fields.md').read_text()
  assert checks.markdown(checks.TRAIN_FIELDS) in doc
  assert checks.markdown(registry.own_fields()) in doc
  assert checks.markdown(checks.FED_OWN_FIELDS) in doc


def test_check_field_kinds():
  f = checks.Field('x', int, lo=1)
  assert f.ok(3) and not f.ok(True) and not f.ok(2.0) and not f.ok(0)
  g = checks.Field('y', float, lo=0, hi=1, hi_open=True)
  assert g.ok(0) and g.ok(0.5) and not g.ok(1.0) and not g.ok(math.nan)
  assert g.describe() == 'a finite number in [0, 1)'
  e = checks.Field('epoch', int, lo=0, also=('last',))
  cfg = ml_collections.ConfigDict({'epoch': '7'})
  checks.check(cfg, [e])  # absl passes numbers to str fields as strings.
  cfg.epoch = 'first'
  with pytest.raises(ValueError, match=r"config\.epoch='first'"):
    checks.check(cfg, [e])
