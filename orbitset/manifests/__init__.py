"""Manifests: model, build, verification and downloads."""
