"""outputs.py: atomic writes, damaged files read as missing, one writer."""

import os

import jax
import pytest

from valley_jax import outputs


def test_write_is_atomic_when_interrupted(tmp_path, monkeypatch):
  path = tmp_path / 'results.json'
  outputs.write_json(path, {'v': 1})

  def killed(self, target):
    raise KeyboardInterrupt  # The process dies between write and rename.
  monkeypatch.setattr(type(outputs.epath.Path(path)), 'replace', killed)
  with pytest.raises(KeyboardInterrupt):
    outputs.write_json(path, {'v': 2})
  assert outputs.read_json(path) == {'v': 1}  # The old file, whole.
  assert os.listdir(tmp_path) == ['results.json']  # No temporary left.


def test_unreadable_json_counts_as_missing(tmp_path):
  (tmp_path / 'a.json').write_text('{"curves": [1, 2')
  (tmp_path / 'b.jsonl').write_text('{"epoch": 1}\n{"epo')
  assert outputs.read_json(tmp_path / 'a.json') is None
  assert outputs.read_jsonl(tmp_path / 'b.jsonl') is None
  assert outputs.read_json(tmp_path / 'missing.json') is None


def test_only_process_zero_writes(tmp_path, monkeypatch):
  """Outputs of the other processes are skipped: one writer per file."""
  outputs.write_json(tmp_path / 'a.json', {'x': 1})
  monkeypatch.setattr(jax, 'process_index', lambda: 1)
  outputs.write_json(tmp_path / 'b.json', {'x': 1})
  assert sorted(os.listdir(tmp_path)) == ['a.json']


def test_append_jsonl_adds_the_last_row_or_writes_them_all(tmp_path):
  path = tmp_path / 'metrics.jsonl'
  rows = [{'round': 1, 'loss': 0.5}]
  outputs.append_jsonl(path, rows)  # No file yet: every row.
  rows.append({'round': 2, 'loss': float('nan')})
  outputs.append_jsonl(path, rows)  # One line more, strict JSON.
  assert path.read_text() == ('{"round": 1, "loss": 0.5}\n'
                              '{"round": 2, "loss": null}\n')
  # A file that a kill left behind is rewritten from the checkpoint's
  # history first (checkpoint.rebuild_metrics), then appended to.
  outputs.write_jsonl(path, rows[:1])
  outputs.append_jsonl(path, rows)
  assert outputs.read_jsonl(path) == [rows[0], {'round': 2, 'loss': None}]
