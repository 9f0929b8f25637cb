"""Public path of valley_jax.core.directions (docs/api.md).

Kept for users' code: `import valley_jax.directions` gives the very module
valley_jax.core.directions, not a copy, so there is one place for the concept.
"""

import sys

from valley_jax.core import directions as _module

sys.modules[__name__] = _module
