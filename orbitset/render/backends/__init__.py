"""Render backends; each imports its renderer (pyrender, bpy) only inside its own module."""
