"""The webdataset stage `orbitset.loaders.wds.PairStage` yields PairLoader's pairs for the same shards and seed."""

from __future__ import annotations

import pytest
import torch

from orbitset.errors import SchemaError, ShardError
from orbitset.loaders import PairLoader
from orbitset.loaders.plan import pair_views
from orbitset.loaders.wds import PairStage
from orbitset.manifests.model import load_manifest

wds = pytest.importorskip("webdataset")
FIELDS = ("view_a", "view_b", "rel_rotation", "rot_a", "rot_b", "latents_a", "latents_b", "rel_latents", "label",
          "index_a", "index_b")


def loader_records(loader: PairLoader) -> dict[str, list[dict]]:
    """key -> that object's pair records, in draw order, unbatched from the loader."""
    out: dict[str, list[dict]] = {}
    for batch in loader:
        for row, key in enumerate(batch["key"]):
            out.setdefault(key, []).append({name: batch[name][row] for name in FIELDS})
    return out


@pytest.mark.parametrize("rotation, normalize", [("quat", True), ("matrix", False), ("quat_raw", True)])
def test_stage_matches_pair_loader(dataset, rotation, normalize):
    shards = [str(dataset / name) for name in load_manifest(dataset).splits["train"]]
    options = dict(pairs_per_object=3, seed=11, rotation=rotation, normalize=normalize)
    expected = loader_records(PairLoader(dataset, batch_size=5, split="train", shuffle=False, **options))
    stage = PairStage(**options)
    got: dict[str, list[dict]] = {}
    for record in wds.WebDataset(shards, shardshuffle=False).compose(stage):
        got.setdefault(record["key"], []).append(record)
    assert got.keys() == expected.keys() and len(got) == 9
    for key, records in got.items():
        assert len(records) == 3
        for mine, theirs in zip(records, expected[key]):
            for name in FIELDS:
                value, reference = torch.as_tensor(mine[name]), theirs[name]
                assert value.shape == reference.shape, name
                if value.dtype.is_floating_point:
                    torch.testing.assert_close(value, reference.to(value.dtype), atol=1e-6, rtol=0, msg=f"{key} {name}")
                else:
                    assert torch.equal(value, reference.to(value.dtype)), f"{key} {name}"


def test_stage_follows_epochs_and_batches(dataset):
    shards = [str(dataset / name) for name in load_manifest(dataset).splits["train"]]
    stage = PairStage(seed=4)
    first = [(r["key"], r["index_a"], r["index_b"]) for r in stage(wds.WebDataset(shards, shardshuffle=False))]
    stage.set_epoch(1)
    second = [(r["key"], r["index_a"], r["index_b"]) for r in stage(wds.WebDataset(shards, shardshuffle=False))]
    assert first != second
    loader = PairLoader(dataset, batch_size=9, split="train", shuffle=False, seed=4)
    loader.set_epoch(1)
    batch = next(iter(loader))
    assert sorted(second) == sorted(zip(batch["key"], batch["index_a"].tolist(), batch["index_b"].tolist()))
    batched = next(iter(wds.WebDataset(shards, shardshuffle=False).compose(PairStage(seed=4)).batched(4)))
    assert batched["view_a"].shape == (4, 3, 32, 32) and batched["rel_rotation"].shape == (4, 4)


def test_pair_views_are_distinct_and_cover_the_views():
    pairs = pair_views(0, 0, "class0__0000", 2000, 5)
    assert all(a != b and 0 <= a < 5 and 0 <= b < 5 for a, b in pairs)
    assert len(set(pairs)) == 20


def test_stage_refuses_decoded_or_single_view_samples(dataset):
    shards = [str(dataset / load_manifest(dataset).splits["train"][0])]
    decoded = wds.WebDataset(shards, shardshuffle=False).decode("rgb8")
    with pytest.raises(SchemaError, match="before .decode()"):
        next(iter(decoded.compose(PairStage())))
    raw = next(iter(wds.WebDataset(shards, shardshuffle=False)))
    single = {name: value for name, value in raw.items() if not (name[:3].isdigit() and name[:3] != "000")}
    with pytest.raises(ShardError, match="1 view"):
        PairStage().pairs(single)


def test_brace_notation_names_the_shards(dataset):
    train = load_manifest(dataset).splits["train"]
    assert train == ["train-000000.tar", "train-000001.tar", "train-000002.tar"]
    braces = PairLoader(f"{dataset}/train-{{000000..000002}}.tar", batch_size=4, seed=2, shuffle=False)
    listed = PairLoader([str(dataset / name) for name in train], batch_size=4, seed=2, shuffle=False)
    assert [s.name for s in braces.shards] == train
    keys = []
    for a, b in zip(list(braces), list(listed)):
        assert a["key"] == b["key"] and torch.equal(a["view_a"], b["view_a"])
        keys += a["key"]
    with pytest.raises(ShardError, match="train-000003.tar"):
        PairLoader(f"{dataset}/train-{{000000..000003}}.tar", batch_size=4)
    stage = wds.WebDataset(f"{dataset}/train-{{000000..000002}}.tar", shardshuffle=False).compose(PairStage())
    assert sorted(record["key"] for record in stage) == sorted(keys) and len(keys) == 9
