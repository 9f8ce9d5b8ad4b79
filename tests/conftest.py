"""Shared test configuration: gpu tests are skipped (never passed) without CUDA; blender tests without bpy."""

from __future__ import annotations

import importlib.util

import pytest
import torch


def pytest_collection_modifyitems(config, items):
    no_cuda = pytest.mark.skip(reason="needs a CUDA device (torch.cuda.is_available() is False)")
    no_bpy = pytest.mark.skip(reason="needs Blender's bpy module: pip install 'orbitset[render]'")
    no_ray = pytest.mark.skip(reason="needs ray: pip install 'orbitset[ray]'")
    for item in items:
        if "gpu" in item.keywords and not torch.cuda.is_available():
            item.add_marker(no_cuda)
        if "blender" in item.keywords and importlib.util.find_spec("bpy") is None:
            item.add_marker(no_bpy)
        if "ray" in item.keywords and importlib.util.find_spec("ray") is None:
            item.add_marker(no_ray)
