"""Loaders: pairs and sequences of views with their relative transformations, single views, all views, point clouds.

`PairLoader`, `SequenceLoader`, `ViewLoader` and `PointLoader` read object samples from shards (a dataset folder, a
manifest path or URL, or a list of shard paths/URLs), decode only the views they use (on the GPU where there is one)
and yield dict batches on the device. See `orbitset.loaders.loader` for distribution, resumption and errors.
"""

from orbitset.loaders.decode import MEAN_3DIEBENCH, STD_3DIEBENCH
from orbitset.loaders.pairs import PairLoader
from orbitset.loaders.points import PointLoader
from orbitset.loaders.sequences import SequenceLoader
from orbitset.loaders.views import ViewLoader

__all__ = ["PairLoader", "SequenceLoader", "ViewLoader", "PointLoader", "MEAN_3DIEBENCH", "STD_3DIEBENCH"]
