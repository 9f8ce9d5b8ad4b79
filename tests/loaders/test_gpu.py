"""GPU decoding against the CPU path (skipped, never passed, without CUDA)."""

from __future__ import annotations

import io

import pytest
import torch
from PIL import Image

from orbitset.errors import ShardError

from orbitset.loaders import PairLoader, ViewLoader
from orbitset.loaders.decode import GpuJpegDecoder

pytestmark = pytest.mark.gpu


def _needs_decoder():
    if GpuJpegDecoder.available_backend() is None:
        pytest.skip("no GPU JPEG decoder installed (torchvision, nvidia-nvimgcodec or torchcodec)")


@pytest.mark.parametrize("size", [None, 16])
def test_gpu_decoded_pixels_match_cpu(dataset, size):
    _needs_decoder()
    cpu = list(PairLoader(dataset, 4, seed=5, size=size, normalize=False))
    gpu = list(PairLoader(dataset, 4, seed=5, size=size, normalize=False, device="cuda", decode="gpu", num_workers=2))
    assert len(cpu) == len(gpu)
    for a, b in zip(cpu, gpu):
        assert a["key"] == b["key"] and b["view_a"].is_cuda
        for name in ("view_a", "view_b"):
            difference = (a[name].float() - b[name].cpu().float()).abs().mean().item()
            assert difference <= 2.0, f"{name}: mean absolute difference {difference:.2f} levels"
        torch.testing.assert_close(a["rel_rotation"], b["rel_rotation"].cpu())


def test_gpu_normalised_channels_last_and_fallback(dataset):
    _needs_decoder()
    cpu = next(iter(ViewLoader(dataset, 3, split="val", seed=1)))
    loader = ViewLoader(dataset, 3, split="val", seed=1, device="cuda", channels_last=True)
    gpu = next(iter(loader))
    assert gpu["view"].is_contiguous(memory_format=torch.channels_last)
    assert (cpu["view"] - gpu["view"].cpu()).abs().mean().item() < 2.0 / (255 * 0.0969)
    decoder = GpuJpegDecoder("cuda")
    png = io.BytesIO()
    Image.new("RGB", (8, 8), (10, 20, 30)).save(png, format="PNG")
    out = decoder.decode([png.getvalue()], None, [True], ["png test image"])  # nvJPEG rejects PNG: Pillow fallback
    assert out.shape == (1, 3, 8, 8) and out.is_cuda and out[0, :, 0, 0].tolist() == [30, 20, 10]  # bgr swapped
    if decoder.backend in ("torchvision", "torchcodec"):  # nvImageCodec decodes PNG itself
        assert decoder.fallbacks == 1
    with pytest.raises(ShardError, match="broken image"):
        decoder.decode([b"not an image"], None, [False], ["broken image"])
