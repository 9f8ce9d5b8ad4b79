"""Import optional heavy dependencies (bpy, pyrender, ray, GPU decoders) only where they are used."""

from __future__ import annotations

import importlib
from types import ModuleType

from orbitset.errors import DependencyError

#: pip extra that provides each optional module.
_EXTRAS = {
    "bpy": "render",
    "pyrender": "render",
    "OpenGL": "render",
    "threadpoolctl": "render",
    "ray": "ray",
    "matplotlib": "dev",
    "fsspec": "remote",
    "huggingface_hub": "remote",
}


def require(module: str, purpose: str) -> ModuleType:
    """Import `module` or raise DependencyError saying which extra installs it and what needed it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        top = module.split(".")[0]
        extra = _EXTRAS.get(top)
        how = f"pip install 'orbitset[{extra}]'" if extra else f"pip install {top}"
        raise DependencyError(f"{purpose} needs the optional package '{top}' ({exc}); install it with: {how}") from exc
