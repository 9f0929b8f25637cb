"""Public path of valley_jax.core.sweep (docs/api.md).

Kept for users' code: `import valley_jax.landscape` gives the very module
valley_jax.core.sweep, not a copy, so there is one place for the concept.
"""

import sys

from valley_jax.core import sweep as _module

sys.modules[__name__] = _module
