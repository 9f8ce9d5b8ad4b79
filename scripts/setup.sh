#!/usr/bin/env bash
# Create the virtual environment and install orbitset with everything its tests and demo need. Idempotent.
#   usage: scripts/setup.sh [VENV_DIR]
set -euo pipefail
venv=${1:-.venv}
here=$(cd "$(dirname "$0")/.." && pwd)

# System libraries of the renderers: OSMesa (pyrender on CPU), EGL and GL (pyrender on GPU, bpy).
missing=()
for lib in libOSMesa.so.8 libEGL.so.1 libGL.so.1; do
  ldconfig -p | grep -q "$lib" || missing+=("$lib")
done
if [ ${#missing[@]} -gt 0 ]; then
  packages="libosmesa6 libegl1 libgl1 libxrender1 libxi6 libxkbcommon0 libsm6 libxfixes3 libxxf86vm1"
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "setup: installing system libraries for the renderers (${missing[*]} missing)"
    apt-get install -y -q $packages >/dev/null 2>&1 || { apt-get update -q >/dev/null && apt-get install -y -q $packages >/dev/null; }
  else
    echo "setup: the renderers need ${missing[*]}; install them with: sudo apt-get install -y $packages" >&2
  fi
fi

if [ ! -x "$venv/bin/python" ]; then
  python=$(command -v python3.11 || command -v python3)
  echo "setup: creating $venv with $($python --version)"
  "$python" -m venv "$venv"
fi
pip=("$venv/bin/python" -m pip --disable-pip-version-check -q)
"${pip[@]}" install --upgrade "pip>=24"
# torch first, exactly this version: its CPU wheel is on this machine kind; any other request pulls CUDA builds.
"$venv/bin/python" -c "import torch" 2>/dev/null || "${pip[@]}" install torch==2.13.0
"${pip[@]}" install -e "$here[render,ray,remote,publish,dev]"
# pyrender pins PyOpenGL 3.1.0 (no OSMesa entry points), so no extra can carry it: its dependencies are in [render].
"${pip[@]}" install --no-deps "pyrender==0.1.45"
"$venv/bin/python" -c "import orbitset, orbitset.loaders, torch, trimesh, webdataset, roma; print('setup: orbitset', orbitset.__version__, 'torch', torch.__version__)"
