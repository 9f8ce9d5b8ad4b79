"""Renderers, recipes, render jobs, executors and the shard writer of a render job."""
