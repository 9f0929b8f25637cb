"""The package's layout (docs/architecture.md): no import cycle, imports go
down the layers only, no private name is reached from another module, and
no two modules share a name. Read from the source with ast, so every import
counts: those inside functions and under TYPE_CHECKING too."""

import ast
import collections
import pathlib

import pytest

_ROOT = pathlib.Path(__file__).parent.parent / 'valley_jax'
# The public paths of core modules (docs/api.md): each replaces itself in
# sys.modules by its core module, so it is an alias, not a second module.
_ALIASES = {'valley_jax.tree', 'valley_jax.directions', 'valley_jax.normalize',
            'valley_jax.landscape'}
# Layers, lowest first; a module imports from its own layer or below.
_LAYERS = [
    # Building blocks with no project imports above them.
    ('valley_jax', 'valley_jax.errors', 'valley_jax.checks',
     'valley_jax.compile_cache', 'valley_jax.preemption', 'valley_jax.watch',
     'valley_jax.distributed', 'valley_jax.sharding', 'valley_jax.outputs',
     'valley_jax.data*', 'valley_jax.models*'),
    # Config-free math.
    ('valley_jax.core*',),
    # Infrastructure on top of the math, and the FL round engine.
    ('valley_jax.checkpoint', 'valley_jax.convert', 'valley_jax.rundir',
     'valley_jax.plots', 'valley_jax.fed', 'valley_jax.fed.algorithm',
     'valley_jax.fed.local', 'valley_jax.fed.rounds',
     'valley_jax.fed.alignment', 'valley_jax.fed.reference',
     'valley_jax.fed.fed*', 'valley_jax.fed.moon', 'valley_jax.fed.scaffold'),
    # What runners hand to their parts: the probe's interface and studies.
    ('valley_jax.train', 'valley_jax.probe', 'valley_jax.probe.prober',
     'valley_jax.probe.study', 'valley_jax.probe.studies*',
     'valley_jax.probe.registry', 'valley_jax.fed.figures',
     'valley_jax.fed.robust', 'valley_jax.fed.intervals'),
    # The runners.
    ('valley_jax.train.runner', 'valley_jax.probe.runner',
     'valley_jax.fed.runner'),
    # Config builders for configs/, the mains' preamble, public aliases.
    ('valley_jax.defaults', 'valley_jax.cli', *sorted(_ALIASES)),
]


def _modules() -> dict[str, pathlib.Path]:
  out = {}
  for path in _ROOT.rglob('*.py'):
    parts = path.relative_to(_ROOT.parent).with_suffix('').parts
    if parts[-1] == '__init__':
      parts = parts[:-1]
    out['.'.join(parts)] = path
  return out


def _imports(name: str, path: pathlib.Path, mods) -> set[str]:
  """The project modules `name` imports (anywhere in its source)."""
  package = name if path.name == '__init__.py' else name.rpartition('.')[0]
  found = set()
  for node in ast.walk(ast.parse(path.read_text())):
    if isinstance(node, ast.Import):
      targets = [a.name for a in node.names]
    elif isinstance(node, ast.ImportFrom):
      base = node.module or ''
      if node.level:
        up = package.split('.')[:len(package.split('.')) - node.level + 1]
        base = '.'.join(up + ([base] if base else []))
      targets = [f'{base}.{a.name}' if f'{base}.{a.name}' in mods else base
                 for a in node.names]
    else:
      continue
    for t in targets:
      while t not in mods and '.' in t:
        t = t.rpartition('.')[0]
      if t in mods and t != name:
        found.add(t)
  return found


def _graph():
  mods = _modules()
  return {m: _imports(m, p, mods) for m, p in mods.items()}


def _cycles(graph) -> list[list[str]]:
  """Strongly connected components with more than one module (Tarjan)."""
  index, low, stack, on, out = {}, {}, [], set(), []

  def visit(v):
    index[v] = low[v] = len(index)
    stack.append(v)
    on.add(v)
    for w in graph[v]:
      if w not in index:
        visit(w)
        low[v] = min(low[v], low[w])
      elif w in on:
        low[v] = min(low[v], index[w])
    if low[v] == index[v]:
      comp = []
      while True:
        w = stack.pop()
        on.discard(w)
        comp.append(w)
        if w == v:
          break
      if len(comp) > 1:
        out.append(sorted(comp))

  for v in sorted(graph):
    if v not in index:
      visit(v)
  return out


def test_cycle_finder_finds_a_planted_cycle():
  graph = {'a': {'b'}, 'b': {'c'}, 'c': {'a'}, 'd': {'a'}}
  assert _cycles(graph) == [['a', 'b', 'c']]
  assert _cycles({'a': {'b'}, 'b': set()}) == []


def test_no_import_cycle():
  assert _cycles(_graph()) == []


def _layer(module: str) -> int:
  for i, names in enumerate(_LAYERS):
    for n in names:
      if module == n or (n.endswith('*') and module.startswith(n[:-1])):
        return i
  raise AssertionError(f'{module} has no layer in tests/test_layout.py')


def test_imports_go_down_the_layers():
  upward = [(a, b) for a, deps in _graph().items() for b in deps
            if _layer(b) > _layer(a)]
  assert upward == []


def test_core_reads_no_config():
  # Config-free math: nothing in core/ imports ml_collections or a runner.
  for name, path in _modules().items():
    if name.startswith('valley_jax.core'):
      assert 'ml_collections' not in path.read_text(), name


def test_no_module_imports_a_public_alias():
  users = [(a, b) for a, deps in _graph().items() for b in deps
           if b in _ALIASES]
  assert users == []


# Public names that start with an underscore: NamedTuple's methods, and
# os._exit (the documented way to end a process from a thread).
_NAMEDTUPLE = ('_replace', '_asdict', '_fields', '_make', '_exit')


def test_no_private_name_of_another_module():
  reached = []
  for name, path in _modules().items():
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
      if (isinstance(node, ast.Attribute) and node.attr.startswith('_') and
          not node.attr.startswith('__') and node.attr not in _NAMEDTUPLE and
          isinstance(node.value, ast.Name) and
          node.value.id not in ('self', 'cls')):
        # A module's private name, or an object's private attribute
        # reached from outside its class (prober._settings, ...).
        reached.append(f'{name}: {node.value.id}.{node.attr}')
  assert reached == []


def test_module_names_are_unique():
  # Each main's package has its runner.py: one concept, one name per main.
  names = collections.defaultdict(list)
  for name in _modules():
    if name not in _ALIASES and not name.endswith(('.runner', 'valley_jax')):
      names[name.rpartition('.')[2]].append(name)
  assert {k: v for k, v in names.items() if len(v) > 1} == {}


@pytest.mark.parametrize('alias', sorted(_ALIASES))
def test_aliases_only_replace_themselves(alias):
  source = _modules()[alias].read_text()
  assert 'sys.modules[__name__] = _module' in source
  assert source.count('\ndef ') == 0
