"""Loaders: pairs of views with their relative transformation, single views, all views, point clouds."""
