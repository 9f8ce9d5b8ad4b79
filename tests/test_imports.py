"""`import orbitset` and `import orbitset.loaders` need only numpy, torch and webdataset."""

from __future__ import annotations

import subprocess
import sys
import textwrap

ALLOWED = ("numpy", "torch", "webdataset")

BLOCKER = textwrap.dedent(
    f"""
    import sys, importlib.abc
    for name in {ALLOWED!r}:
        __import__(name)
    preloaded = {{m.split('.')[0] for m in sys.modules}}

    class Blocker(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            top = name.split('.')[0]
            if top in preloaded or top in sys.stdlib_module_names or top == 'orbitset':
                return None
            raise ImportError(f'blocked third-party import: {{name}}')

    sys.meta_path.insert(0, Blocker())
    """
)


def test_import_needs_only_numpy_torch_webdataset():
    code = BLOCKER + "import orbitset, orbitset.loaders, orbitset.geometry, orbitset.schema, orbitset.shards\nprint('ok')"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def test_heavy_packages_are_not_imported_by_the_package():
    code = "import sys, orbitset, orbitset.loaders, orbitset.cli\n" "print(sorted(m for m in ('bpy', 'pyrender', 'ray', 'torchvision', 'matplotlib', 'trimesh') if m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
