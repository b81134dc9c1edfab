"""Moving batches between numpy, torch and devices: shared by inference, the explainer and training."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch


def to_device(batch: Any, device: torch.device) -> Any:
    """The batch's tensors (at any depth of dicts, lists and tuples) on `device`; everything else as it is."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, dict):
        return {k: to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(to_device(v, device) for v in batch)
    return batch


def to_batch(images: Sequence[np.ndarray]) -> torch.Tensor:
    """uint8 HxWx3 images of one size -> float (B, 3, H, W) in [0, 1], transposed while still bytes."""
    return torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).contiguous().float().div_(255.0)
