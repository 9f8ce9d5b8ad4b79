"""Named training + evaluation configurations, applied by one flag (``--protocol NAME``).

``3diebench-paper``: the SIE paper's 3DIEBench setup (Garrido et al., ICML 2023; the SIE repository README): ResNet-18 on 256 px
images, one pair per training object and epoch, batch 1024, 2000 epochs, Adam lr 1e-3, weight decay 1e-6, the raw
relative quaternion; evaluations on the frozen trunk with Adam lr 1e-3, no weight decay, batch 256, 300 epochs, a
fresh pair (or view) per object every epoch, the MLP probe's hidden width 1024, no early stopping.

``seq-jepa-paper``: seq-JEPA's 3DIEBench setup (Ghaemi et al. 2025; hafezgh/seq-jepa,
scripts/script_transformed_views.sh): ResNet-18 on 128 px images, sequences of 4 views (--seq-len 3 + the target),
batch 512, 1000 epochs, lr 4e-4 after 20 warmup epochs, no weight decay in training (see
`orbitset.models.train.SEQUENCE_DEFAULTS`), the raw relative quaternion (scipy's ``rot_1.inv() * rot_2`` of the Euler
latents); evaluations with the SIE protocol's probe budget (the repository ships no evaluation command line).
"""

from __future__ import annotations

from typing import Any

from orbitset.errors import OrbitsetError

PROTOCOLS: dict[str, dict[str, dict[str, Any]]] = {
    "3diebench-paper": {
        "train": {"backbone": "resnet18", "size": 256, "batch_size": 1024, "epochs": 2000, "lr": 1e-3,
                  "weight_decay": 1e-6, "pairs_per_object": 1, "quaternion": "raw"},
        "eval": {"batch_size": 256, "probe_epochs": 300, "probe_lr": 1e-3, "probe_weight_decay": 0.0,
                 "probe_hidden": 1024, "pair_sampling": "fresh", "stop_split": None, "holdout_fraction": 0.0},
    },
    "seq-jepa-paper": {
        "train": {"backbone": "resnet18", "size": 128, "batch_size": 512, "epochs": 1000, "lr": 4e-4,
                  "weight_decay": 0.0, "views": 4, "warmup_epochs": 20, "quaternion": "raw"},
        "eval": {"batch_size": 256, "probe_epochs": 300, "probe_lr": 1e-3, "probe_weight_decay": 0.0,
                 "probe_hidden": 1024, "pair_sampling": "fresh", "stop_split": None, "holdout_fraction": 0.0},
    },
}


def apply_protocol(name: str | None, stage: str, values: dict[str, Any], given: set[str]) -> dict[str, Any]:
    """`values` with protocol `name`'s settings for `stage` ("train" or "eval"); an option the user set explicitly
    (named in `given`) to another value than the protocol's is an error. ``name=None`` returns `values` unchanged."""
    if name is None:
        return values
    if name not in PROTOCOLS:
        raise OrbitsetError(f"unknown protocol {name!r}; choose one of {', '.join(PROTOCOLS)}")
    settings = PROTOCOLS[name][stage]
    clashes = sorted(k for k in given & set(settings) if values[k] != settings[k])
    if clashes:
        raise OrbitsetError(f"--protocol {name} fixes {', '.join(f'{k}={settings[k]!r}' for k in clashes)}; "
                            "drop those options or the protocol")
    return {**values, **settings}
