"""Object symmetry: the rotation group of a mesh (`detect`), its records in datasets (`records`), and the
`orbitset symmetry` command (`commands`). Imports only numpy here; scipy and trimesh are imported where used."""

from orbitset.symmetry.detect import (
    COLOUR_TOLERANCE,
    GROUPS,
    MAX_ORDER,
    OUTLIER_FRACTION,
    TOLERANCE,
    Symmetry,
    detect_symmetry,
    rotation_about,
)

__all__ = [
    "COLOUR_TOLERANCE", "GROUPS", "MAX_ORDER", "OUTLIER_FRACTION", "TOLERANCE", "Symmetry", "detect_symmetry",
    "rotation_about",
]
