"""The composition root: the only layer that sees both the engine and the services.

Importing it installs ``wiring.build_runtime`` as the builder of the default runtime.
"""

from nbflow._app import wiring as wiring
