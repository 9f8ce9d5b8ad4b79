"""orbitset: datasets of orbits (3D objects under known transformations), their loaders and reference models.

`import orbitset` stays light: it needs numpy and torch only; renderers, Ray and GPU decoders load where used.
"""

from orbitset.errors import OrbitsetError

__version__ = "0.1.0"

__all__ = ["OrbitsetError", "__version__"]
