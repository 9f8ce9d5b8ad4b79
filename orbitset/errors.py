"""Exception types of orbitset.

Every message says what was wrong and how to fix it; the CLI prints it as one line and exits with status 2.
"""

from __future__ import annotations


class OrbitsetError(Exception):
    """Base class of every error orbitset raises on purpose."""


class UsageError(OrbitsetError, ValueError):
    """An argument of an orbitset function is out of range or of the wrong kind (names it and the accepted values)."""


class SchemaError(OrbitsetError, ValueError):
    """An object sample does not follow the format of `orbitset.schema` (names the field and what is wrong)."""


class AssetError(OrbitsetError):
    """A mesh could not be listed or loaded from an asset source (names the file and the reason)."""


class RenderError(OrbitsetError):
    """A render job or backend failed."""


class ShardError(OrbitsetError):
    """A shard is corrupt, truncated, unsafe or does not match its manifest (names the shard and the key)."""


class ManifestError(OrbitsetError):
    """A manifest is missing, malformed or inconsistent with the files beside it."""


class DownloadError(OrbitsetError):
    """A download failed after its retries (names the URL and the last error)."""


class DependencyError(OrbitsetError, ImportError):
    """An optional dependency is missing; the message names the pip extra that installs it."""
