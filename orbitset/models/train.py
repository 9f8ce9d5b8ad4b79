"""One training loop for every reference model, with checkpoints, resume, metrics and online probes.

One file because the run's config, the trainable wrappers of every family (pairs, sequences, point clouds), the
checkpoint format and the loop that resumes from it change together.

A run directory holds:
- ``config.json``: everything needed to rebuild the model (written when the run starts);
- ``checkpoint.pt``: model, optimiser and RNG state after the last finished epoch (``torch.save`` of state dicts,
  written atomically; read back with ``torch.load(weights_only=True)``); after the last epoch, with batch-norm
  statistics recomputed over one more epoch with the final weights (`recompute_batch_norm`);
- ``metrics.jsonl``: one JSON object per logged step and per epoch (loss terms, online probe metrics, images/s);
- ``eval/TASK.json``: results of ``orbitset eval``.

Image methods train on pairs from `orbitset.loaders.PairLoader`, with the relative quaternion in the config's
convention (`TrainConfig.quaternion`, `orbitset.models.conditions`: "raw" as SIE feeds it by default); sequence
methods (seq-JEPA, `orbitset.models.seqjepa`) on sequences of `TrainConfig.views` views from
`orbitset.loaders.SequenceLoader`, with AdamW, a linear learning-rate warmup and an EMA update after every step; point-cloud
models on `orbitset.loaders.PointLoader` with a rotation protocol ("z": random rotations about the world Z axis,
which is up in orbitset; "so3": uniform random rotations). Mixed precision (bfloat16 autocast) is used on CUDA.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

import torch
import torch.nn.functional as F
from torch import nn

from orbitset.errors import OrbitsetError
from orbitset.models import losses
from orbitset.models.backbones import build_backbone
from orbitset.models.conditions import check_quaternion, pair_condition
from orbitset.models.methods import METHODS, Method, MethodOutput, build_method
from orbitset.models.pointclouds import POINT_MODELS, build_point_model
from orbitset.models.seqjepa import SEQUENCE_METHODS, SeqJEPA, ema_decay_at

CONFIG_FILE, CHECKPOINT_FILE, METRICS_FILE = "config.json", "checkpoint.pt", "metrics.jsonl"

#: Published defaults per family (the SIE paper and repository for SIE; PointNet/VN papers for point clouds).
IMAGE_DEFAULTS = {"epochs": 2000, "batch_size": 1024, "lr": 1e-3, "weight_decay": 1e-6, "size": 256}
POINT_DEFAULTS = {"epochs": 250, "batch_size": 32, "lr": 1e-3, "weight_decay": 1e-4, "num_points": 1024}
#: seq-JEPA's (hafezgh/seq-jepa, scripts/script_transformed_views.sh and main_transformed_views.py, as the code
#: effectively applies them): 128 px, batch 512, 1000 epochs, lr 4e-4 after a linear warmup from 1e-5 over 20
#: epochs and then constant (the script's cosine scheduler is overwritten by the warmup code at the start of every
#: epoch), weight decay 0 (training builds Adam with weight_decay=0; --weight-decay 0.001 reaches only the probes).
SEQUENCE_DEFAULTS = {"epochs": 1000, "batch_size": 512, "lr": 4e-4, "weight_decay": 0.0, "size": 128,
                     "warmup_epochs": 20}
#: The learning rate a warmup starts from (seq-JEPA's --initial-lr).
WARMUP_START_LR = 1e-5


@dataclass
class TrainConfig:
    """Settings of a run; ``None`` numbers take the family defaults (`IMAGE_DEFAULTS` / `POINT_DEFAULTS` /
    `SEQUENCE_DEFAULTS`)."""

    method: str
    data: str
    out: str
    epochs: int | None = None
    batch_size: int | None = None
    lr: float | None = None
    weight_decay: float | None = None
    device: str = "cpu"
    size: int | None = None
    backbone: str = "resnet18"
    condition: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    seed: int = 0
    num_workers: int = 0
    #: Pairs (sequences, for sequence methods) drawn per training object and epoch.
    pairs_per_object: int = 1
    rotation: str = "z"
    num_points: int | None = None
    online_probes: bool = True
    log_every: int = 20
    num_classes: int = 0
    rel_latent_names: list[str] = field(default_factory=list)
    #: Quaternion convention of the pair condition (`orbitset.models.conditions`): "raw" (SIE's) or "canonical".
    quaternion: str = "raw"
    #: Sequence methods: views per training sequence K (the paper's seq_len 3 + the target view).
    views: int = 4
    #: Epochs of linear learning-rate warmup from `WARMUP_START_LR` (0: none; default 20 for sequence methods).
    warmup_epochs: int | None = None

    @property
    def is_point_model(self) -> bool:
        return self.method in POINT_MODELS

    @property
    def is_sequence_model(self) -> bool:
        return self.method in SEQUENCE_METHODS

    def lr_at(self, epoch: int) -> float:
        """The learning rate of `epoch` (0-based): linear from `WARMUP_START_LR` to `lr` over the warmup epochs
        (seq-JEPA's formula), then `lr`."""
        if self.warmup_epochs and epoch < self.warmup_epochs:
            return WARMUP_START_LR + (self.lr - WARMUP_START_LR) * epoch / self.warmup_epochs
        return self.lr

    def resolved(self) -> "TrainConfig":
        """A copy with the family defaults filled in and the method name checked."""
        if self.method not in METHODS and self.method not in POINT_MODELS and not self.is_sequence_model:
            raise OrbitsetError(
                f"unknown method {self.method!r}; choose one of {', '.join([*METHODS, *SEQUENCE_METHODS, *POINT_MODELS])}"
            )
        if self.rotation not in ("z", "so3"):
            raise OrbitsetError(f"rotation protocol must be 'z' or 'so3', not {self.rotation!r}")
        check_quaternion(self.quaternion)
        values = asdict(self)
        defaults = (POINT_DEFAULTS if self.is_point_model else SEQUENCE_DEFAULTS if self.is_sequence_model
                    else {**IMAGE_DEFAULTS, "warmup_epochs": 0})
        for key, default in defaults.items():
            if values.get(key) is None:
                values[key] = default
        for key, low in (("epochs", 0), ("batch_size", 2), ("size", 8), ("num_points", 1), ("pairs_per_object", 1),
                         ("num_workers", 0), ("views", 2), ("warmup_epochs", 0)):
            if values.get(key) is not None and values[key] < low:
                raise OrbitsetError(f"{key.replace('_', '-')} must be at least {low}, got {values[key]}")
        if values["lr"] <= 0 or values["weight_decay"] < 0:
            raise OrbitsetError(f"lr must be positive and weight-decay non-negative, got {values['lr']} and "
                                f"{values['weight_decay']}")
        if values["condition"] is None and not self.is_point_model:
            values["condition"] = {**METHODS, **SEQUENCE_METHODS}[self.method][1]
        return TrainConfig(**values)


class ImageModel(nn.Module):
    """A method plus online probes trained on detached features so that learning is visible: a linear classifier
    on rep_a and a linear regressor of the relative quaternion from [rep_a, rep_b] (the original's online evaluator
    uses MLPs on several parts; these only monitor training and no reported number comes from them)."""

    def __init__(self, method: Method, num_classes: int, condition: str, rel_latent_names: list[str],
                 online_probes: bool = True) -> None:
        super().__init__()
        self.method = method
        self.condition = condition
        self.rel_latent_names = list(rel_latent_names)
        self.online_probes = online_probes
        self.classifier = nn.Linear(method.rep_dim, max(num_classes, 1))
        self.regressor = nn.Linear(2 * method.rep_dim, 4)

    def pair_condition(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return pair_condition(batch["rel_rotation"], batch.get("rel_latents"), self.rel_latent_names, self.condition)

    def step(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        out = self.method(batch["view_a"], batch["view_b"], self.pair_condition(batch))
        return self.with_probes(out, out.rep_a, batch["rel_rotation"], batch["label"])

    def with_probes(self, out: MethodOutput, class_features: torch.Tensor, rel_rotation: torch.Tensor,
                    labels: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        """The method's loss plus the online probes' (on detached features: the classifier on `class_features`,
        the regressor of `rel_rotation` on [rep_a, rep_b]), and the logged terms."""
        terms = {"loss": float(out.loss.detach()), **{k: float(v.detach()) for k, v in out.terms.items()}}
        if not self.online_probes:
            return out.loss, terms
        logits = self.classifier(class_features.detach().float())
        labels = labels.long()
        predicted = self.regressor(torch.cat([out.rep_a.detach().float(), out.rep_b.detach().float()], dim=1))
        target = rel_rotation.float()
        probe_loss = F.cross_entropy(logits, labels) + F.mse_loss(predicted, target)
        terms["probe_top1"] = float((logits.argmax(1) == labels).float().mean())
        terms["probe_r2"] = losses.r2_global_mean(predicted.detach(), target)
        return out.loss + probe_loss, terms


class SequenceModel(ImageModel):
    """A sequence method (`orbitset.models.seqjepa`) on `orbitset.loaders.SequenceLoader` batches, with the online
    probes of `ImageModel` (the original's: the classifier on the aggregate representation, the regressor of the
    first pair's relative quaternion from the representations of views 0 and 1)."""

    def __init__(self, method: SeqJEPA, num_classes: int, condition: str, rel_latent_names: list[str],
                 online_probes: bool = True) -> None:
        super().__init__(method, num_classes, condition, rel_latent_names, online_probes)
        self.classifier = nn.Linear(method.aggregate_dim, max(num_classes, 1))

    def step(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        """The pair conditions of the consecutive views (N, K-1, C) are the actions."""
        out = self.method(batch["views"], self.pair_condition(batch))
        return self.with_probes(out, out.aggregate, batch["rel_rotation"][:, 0], batch["label"])

    def after_step(self, epoch: int, epochs: int) -> None:
        """The EMA update of the target trunk, after every optimiser step."""
        self.method.update_target(ema_decay_at(epoch, epochs, self.method.ema_decay))


class PointModel(nn.Module):
    """A point-cloud classifier trained with cross-entropy."""

    def __init__(self, classifier: nn.Module) -> None:
        super().__init__()
        self.classifier = classifier

    def step(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        logits = self.classifier(batch["points"].float())
        labels = batch["label"].long()
        loss = F.cross_entropy(logits, labels)
        return loss, {"loss": float(loss.detach()), "top1": float((logits.argmax(1) == labels).float().mean())}


def build_model(cfg: TrainConfig) -> nn.Module:
    """The trainable model of a resolved config (an `ImageModel`, a `SequenceModel` or a `PointModel`)."""
    if cfg.is_point_model:
        return PointModel(build_point_model(cfg.method, cfg.num_classes, **cfg.params))
    if cfg.is_sequence_model:  # seq-JEPA's trunk is torchvision's ResNet-18 with zero_init_residual=True
        method = build_method(cfg.method, build_backbone(cfg.backbone, cfg.size, zero_init_residual=True),
                              cfg.condition, SEQUENCE_METHODS, **cfg.params)
        return SequenceModel(method, cfg.num_classes, cfg.condition, cfg.rel_latent_names, cfg.online_probes)
    method = build_method(cfg.method, build_backbone(cfg.backbone, cfg.size), cfg.condition, **cfg.params)
    return ImageModel(method, cfg.num_classes, cfg.condition, cfg.rel_latent_names, cfg.online_probes)


def build_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """Adam (AdamW, decoupled weight decay, for sequence methods) over the trainable parameters."""
    optimizer = torch.optim.AdamW if cfg.is_sequence_model else torch.optim.Adam
    return optimizer([p for p in model.parameters() if p.requires_grad], lr=cfg.lr, weight_decay=cfg.weight_decay)


def to_device(batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
    return {k: v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}


def save_checkpoint(path: Path, model: nn.Module, optimizer: torch.optim.Optimizer, epoch: int,
                    batch_norm_recomputed: bool = False) -> None:
    """Write model/optimiser/RNG state atomically (a partial file is never taken for a checkpoint)."""
    state = {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "epoch": epoch,
        "torch_rng": torch.get_rng_state(),
        "batch_norm_recomputed": torch.tensor(batch_norm_recomputed),
    }
    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint without unpickling arbitrary objects."""
    if not path.is_file():
        raise OrbitsetError(f"no checkpoint at {path}; train the run first ('orbitset train METHOD --data DATASET "
                            f"--out {path.parent}')")
    return torch.load(path, map_location=map_location, weights_only=True)


def write_config(run: Path, cfg: TrainConfig) -> None:
    from orbitset.manifests.model import write_json_atomic

    run.mkdir(parents=True, exist_ok=True)
    write_json_atomic(run / CONFIG_FILE, asdict(cfg))


def read_config(run: str | os.PathLike) -> TrainConfig:
    path = Path(run) / CONFIG_FILE
    if not path.is_file():
        raise OrbitsetError(f"{run} is not a training run (no {CONFIG_FILE}); create it with 'orbitset train METHOD "
                            f"--data DATASET --out {run}'")
    return TrainConfig(**json.loads(path.read_text()))


def load_run(run: str | os.PathLike, device: str | torch.device = "cpu") -> tuple[TrainConfig, nn.Module]:
    """Rebuild a run's model from config.json and its last checkpoint, in eval mode."""
    cfg = read_config(run)
    model = build_model(cfg)
    # strict: a checkpoint that does not fit the config is an error (the original scripts kept random weights)
    model.load_state_dict(load_checkpoint(Path(run) / CHECKPOINT_FILE, device)["model"], strict=True)
    return cfg, model.to(device).eval()


def mixed_precision(device: torch.device) -> torch.autocast:
    """bfloat16 autocast on CUDA; disabled elsewhere."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")


def recompute_batch_norm(model: nn.Module, batches: Iterable[dict[str, Any]], device: torch.device) -> int:
    """Set every batch norm's running statistics to their plain average over `batches` (forward passes in train
    mode, no gradients) with the model's current weights ("precise BN"); returns the number of batches used.

    The exponential averages kept during training trail the weights, which in a short run still move quickly; eval
    mode (the frozen trunk of every evaluation, and inference) would read those stale statistics."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return 0
    momenta, rng = [m.momentum for m in norms], torch.get_rng_state()
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average
    model.train()
    used = 0
    with torch.no_grad(), mixed_precision(device):
        for batch in batches:
            if len(batch["label"]) >= 2:
                model.step(to_device(batch, device))
                used += 1
    for m, momentum in zip(norms, momenta):
        m.momentum = momentum
    torch.set_rng_state(rng)  # dropout draws here must not change what a resumed run trains on
    return used


def fit(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    batches_for_epoch: Callable[[int], Iterable[dict[str, Any]]],
    epochs: int,
    run: str | os.PathLike,
    device: str | torch.device = "cpu",
    resume: bool = False,
    log_every: int = 20,
    progress: bool = True,
    label: str = "",
    lr_at: Callable[[int], float] | None = None,
) -> list[dict[str, float]]:
    """Train `model` (with a ``step(batch) -> (loss, terms)`` method) for `epochs` epochs in total.

    ``batches_for_epoch(epoch)`` returns that epoch's batches (seeded by the epoch so that a resumed run sees the
    same data). After every epoch the checkpoint is written; with `resume`, training restarts after the last
    finished epoch with the saved model, optimiser and RNG state. After the last epoch the batch norms' statistics
    are recomputed over the batches of one more epoch (`recompute_batch_norm`) and the checkpoint is written again.
    With `progress`, a bar over each epoch's batches on a terminal and a line per epoch, starting with `label`
    (`orbitset.progress`). ``lr_at(epoch)`` (optional) sets the learning rate of every epoch; a model with
    ``after_step(epoch, epochs)`` has it called after every optimiser step (seq-JEPA's EMA update). Returns the
    per-epoch metrics.
    """
    from tqdm import tqdm

    from orbitset.progress import EpochLines, on_terminal

    run, device = Path(run), torch.device(device)
    run.mkdir(parents=True, exist_ok=True)
    model.to(device)
    start, recomputed = 0, False
    checkpoint = run / CHECKPOINT_FILE
    if resume and checkpoint.is_file():
        state = load_checkpoint(checkpoint, device)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["torch_rng"].cpu())
        start, recomputed = int(state["epoch"]), bool(state.get("batch_norm_recomputed", False))
    elif not resume or not checkpoint.is_file():
        (run / METRICS_FILE).unlink(missing_ok=True)
    if start == 0:
        save_checkpoint(checkpoint, model, optimizer, 0)  # the initial state: a "random-init" baseline when epochs=0
    history = []
    lines = EpochLines(label, epochs, start, enabled=progress)
    autocast = mixed_precision(device)
    with open(run / METRICS_FILE, "a") as metrics:
        for epoch in range(start, epochs):
            model.train()
            sums: dict[str, float] = {}
            count, samples, began = 0, 0, time.perf_counter()
            if lr_at is not None:
                for group in optimizer.param_groups:
                    group["lr"] = lr_at(epoch)
            batches = batches_for_epoch(epoch)
            total = len(batches) if hasattr(batches, "__len__") else None
            bar = tqdm(batches, total=total, desc=f"{label} epoch {epoch + 1}/{epochs}".lstrip(), unit="batch",
                       disable=not (progress and on_terminal()), leave=False)
            for batch in bar:
                if len(batch["label"]) < 2:
                    continue  # batch norm needs two samples: a last batch of one is skipped
                batch = to_device(batch, device)
                with autocast:
                    loss, terms = model.step(batch)
                if not math.isfinite(float(loss.detach())):
                    raise OrbitsetError(f"the loss became {float(loss.detach())} at epoch {epoch + 1}; lower --lr")
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                if hasattr(model, "after_step"):
                    model.after_step(epoch, epochs)
                count += 1
                samples += len(batch["label"])
                for key, value in terms.items():
                    sums[key] = sums.get(key, 0.0) + value
                bar.set_postfix({k: f"{v:.3g}" for k, v in terms.items()})
                if log_every and count % log_every == 0:
                    metrics.write(json.dumps({"epoch": epoch + 1, "step": count, **terms}) + "\n")
            if count == 0:
                raise OrbitsetError("the training split gave no batch; use a smaller --batch-size or more objects")
            seconds = time.perf_counter() - began
            summary = {"epoch": epoch + 1, **{k: v / count for k, v in sums.items()},
                       "samples_per_s": samples / seconds, "seconds": seconds}
            metrics.write(json.dumps(summary) + "\n")
            metrics.flush()
            save_checkpoint(checkpoint, model, optimizer, epoch + 1)
            history.append(summary)
            lines.epoch_done(epoch + 1, {k: v for k, v in summary.items() if k != "epoch"})
        if epochs > 0 and (start < epochs or not recomputed):  # also when an earlier run stopped right before it
            used = recompute_batch_norm(model, batches_for_epoch(epochs), device)
            save_checkpoint(checkpoint, model, optimizer, epochs, batch_norm_recomputed=True)
            metrics.write(json.dumps({"epoch": epochs, "batch_norm_recomputed": used}) + "\n")
    return history


def _pair_loader(cfg: TrainConfig, split: str, **overrides):
    from orbitset.loaders import PairLoader

    options = dict(batch_size=cfg.batch_size, split=split, num_workers=cfg.num_workers, seed=cfg.seed,
                   shuffle=True, size=cfg.size, pairs_per_object=cfg.pairs_per_object, device=cfg.device,
                   rotation=check_quaternion(cfg.quaternion))
    options.update(overrides)
    return PairLoader(cfg.data, **options)


def _sequence_loader(cfg: TrainConfig, split: str, **overrides):
    from orbitset.loaders import SequenceLoader

    options = dict(batch_size=cfg.batch_size, split=split, num_workers=cfg.num_workers, seed=cfg.seed,
                   shuffle=True, size=cfg.size, views=cfg.views, sequences_per_object=cfg.pairs_per_object,
                   device=cfg.device, rotation=check_quaternion(cfg.quaternion))
    options.update(overrides)
    return SequenceLoader(cfg.data, **options)


def _point_loader(cfg: TrainConfig, split: str, rotate: str | None, **overrides):
    from orbitset.loaders import PointLoader

    options = dict(batch_size=cfg.batch_size, split=split, num_workers=cfg.num_workers, seed=cfg.seed,
                   shuffle=True, num_points=cfg.num_points, rotate=rotate, device=cfg.device)
    options.update(overrides)
    return PointLoader(cfg.data, **options)


def train(cfg: TrainConfig, resume: bool = False, progress: bool = True) -> list[dict[str, float]]:
    """Train a run described by `cfg` (see `TrainConfig`), writing config, checkpoints and metrics to ``cfg.out``;
    with `progress`, a bar on a terminal and a line per epoch (see `fit`)."""
    from orbitset.manifests.model import load_manifest

    run = Path(cfg.out)
    if resume and (run / CONFIG_FILE).is_file():
        saved = read_config(run)
        cfg = TrainConfig(**{**asdict(saved), "epochs": cfg.epochs or saved.epochs, "device": cfg.device,
                             "num_workers": cfg.num_workers})
    cfg = cfg.resolved()
    manifest = load_manifest(cfg.data)
    cfg.num_classes = len(manifest.classes)
    loader = (_point_loader(cfg, "train", cfg.rotation) if cfg.is_point_model else
              _sequence_loader(cfg, "train") if cfg.is_sequence_model else _pair_loader(cfg, "train"))
    if not cfg.is_point_model:
        cfg.rel_latent_names = list(loader.rel_latent_names)
    torch.manual_seed(cfg.seed)
    model = build_model(cfg)
    optimizer = build_optimizer(model, cfg)
    write_config(run, cfg)

    def batches(epoch: int) -> Iterable[dict[str, Any]]:
        loader.set_epoch(epoch)  # views, pairs and order depend on (seed, epoch) only: a resumed run sees the same data
        return loader

    return fit(model, optimizer, batches, cfg.epochs, run, cfg.device, resume, cfg.log_every, progress, cfg.method,
               cfg.lr_at if cfg.warmup_epochs else None)
