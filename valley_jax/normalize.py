"""Public path of valley_jax.core.normalize (docs/api.md).

Kept for users' code: `import valley_jax.normalize` gives the very module
valley_jax.core.normalize, not a copy, so there is one place for the concept.
"""

import sys

from valley_jax.core import normalize as _module

sys.modules[__name__] = _module
