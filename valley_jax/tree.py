"""Public path of valley_jax.core.tree (docs/api.md).

Kept for users' code: `import valley_jax.tree` gives the very module
valley_jax.core.tree, not a copy, so there is one place for the concept.
"""

import sys

from valley_jax.core import tree as _module

sys.modules[__name__] = _module
