"""Vision towers: image in [0, 1] (B, 3, H, W) -> patch features (B, N, D) for the Q-Former.

* `TinyTower` (preset `tiny`): a convolutional stem (keeps pixel-level evidence such as noise, JPEG
  blocks and grids that a plain patchify would average away) + an open_clip `Transformer`, with a
  fixed MSCN channel (locally normalised luminance, the classic NR-IQA input) beside RGB. Learned
  position embeddings are interpolated, so it reads 128-px training crops and full 256-px images.
* `EfficientNetTower` (preset `lite0`, the default): an ImageNet-pretrained EfficientNet-Lite, frozen, read
  at four depths; each depth's features are summarised per cell of the coarsest grid by their mean and
  standard deviation (texture statistics that blur, noise and compression reshape), beside a small
  trainable full-resolution stem on RGB + MSCN for pixel-level evidence that ImageNet features discard.
* `OpenClipTower` (presets `clip-*`): an open_clip vision transformer, pretrained tag or local file.
* `InstructBlipTower` (preset `paper`): InstructBLIP's EVA ViT-g (`InstructBlipVisionModel`).

Each tower normalises its own input, reports `dim`, `image_size` (None: any size) and supports
`freeze(fix_rate)` — freezing the first fraction of its blocks, as the MINT-IQA recipe does.
"""

from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


class MSCN(nn.Module):
    """Mean-subtracted contrast-normalised luminance (a fixed, non-learned filter): the statistic BRISQUE
    builds on, whose distribution blur, noise and compression reshape in characteristic ways."""

    def __init__(self, sigma: float = 7 / 6, size: int = 7, c: float = 1 / 255):
        super().__init__()
        ax = torch.arange(size, dtype=torch.float32) - size // 2
        g = torch.exp(-(ax**2) / (2 * sigma**2))
        kernel = torch.outer(g, g) / torch.outer(g, g).sum()
        self.register_buffer("kernel", kernel[None, None], persistent=False)
        self.register_buffer("luma", torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1), persistent=False)
        self.c = c
        self.channels = 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = (x * self.luma).sum(1, keepdim=True)
        b, _, h, w = y.shape
        pad = self.kernel.shape[-1] // 2
        # Blur y and y^2 for the whole batch as one depthwise convolution (batch folded into channels):
        # about 10x faster on CPU than a single-channel convolution over a batch.
        stacked = F.pad(torch.cat([y, y * y], dim=1), (pad,) * 4, mode="reflect").reshape(
            1, 2 * b, h + 2 * pad, w + 2 * pad
        )
        blurred = F.conv2d(stacked, self.kernel.expand(2 * b, 1, -1, -1), groups=2 * b).reshape(b, 2, h, w)
        mu, mean_sq = blurred[:, :1], blurred[:, 1:]
        sigma = (mean_sq - mu * mu).clamp_min(0).sqrt()
        return (y - mu) / (sigma + self.c)


def _freeze(modules: list[nn.Module], fix_rate: float, stem: list[nn.Module]) -> None:
    n = int(round(len(modules) * fix_rate))
    for module in (stem if n > 0 else []) + modules[:n]:
        for p in module.parameters():
            p.requires_grad_(False)


def conv_stem(c_in: int, channels: list[int]) -> nn.Sequential:
    """Stages of a strided 3x3 conv, GroupNorm and GELU: halves the size per stage. GroupNorm, not
    BatchNorm: no running statistics that would differ between training crops and full images, or between
    data-parallel ranks."""
    convs: list[nn.Module] = []
    for c_out in channels:
        convs += [
            nn.Conv2d(c_in, c_out, 3, stride=2, padding=1),
            nn.GroupNorm(min(8, c_out), c_out),
            nn.GELU(),
        ]
        c_in = c_out
    return nn.Sequential(*convs)


class TinyTower(nn.Module):
    def __init__(
        self,
        stem: list[int],
        width: int,
        layers: int,
        heads: int,
        mlp_ratio: float = 2.0,
        mscn: bool = True,
        grid: int = 16,
        **_: Any,
    ):
        super().__init__()
        from open_clip.transformer import Transformer

        self.mscn = MSCN() if mscn else None
        self.stem = conv_stem(3 + (self.mscn.channels if self.mscn else 0), stem)
        self.proj = nn.Conv2d(stem[-1], width, 2, stride=2)  # total stride 2**(len(stem)+1)
        # grid 0: no absolute positions (quality evidence is translation-invariant; crops and full
        # images then look alike to the transformer)
        self.pos = nn.Parameter(torch.randn(1, width, grid, grid) * 0.02) if grid else None
        self.transformer = Transformer(width, layers, heads, mlp_ratio=mlp_ratio)
        self.ln = nn.LayerNorm(width)
        self.dim, self.image_size = width, None
        self.register_buffer("mean", torch.tensor((0.5, 0.5, 0.5)).view(1, 3, 1, 1), persistent=False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = (images - self.mean) / 0.25
        if self.mscn is not None:
            x = torch.cat([x, self.mscn(images)], dim=1)
        x = self.proj(self.stem(x))
        if self.pos is not None:
            x = x + (
                self.pos
                if self.pos.shape[-2:] == x.shape[-2:]
                else F.interpolate(self.pos, size=x.shape[-2:], mode="bicubic", align_corners=False)
            )
        x = x.flatten(2).transpose(1, 2)
        return self.ln(self.transformer(x))

    def freeze(self, fix_rate: float) -> None:
        _freeze(list(self.transformer.resblocks), fix_rate, [self.stem, self.proj])


def _cell_stats(maps: list[torch.Tensor], grid: tuple[int, int]) -> torch.Tensor:
    """Mean and standard deviation of each feature map over the cells of `grid`, stacked on channels."""
    out = []
    for m in maps:
        m = m.float()
        mu = F.adaptive_avg_pool2d(m, grid)
        sd = (F.adaptive_avg_pool2d(m * m, grid) - mu * mu).clamp_min(0).add(1e-6).sqrt()
        out += [mu, sd]
    return torch.cat(out, dim=1)


def fold_batchnorm(net: nn.Module) -> nn.Module:
    """A copy of a frozen network for inference, each batch norm that follows a convolution folded into
    that convolution's weights and bias (timm's `BatchNormAct2d` keeps its activation): the same function
    (float32, up to rounding), without a normalisation pass over every activation."""
    from timm.layers import BatchNormAct2d

    net = copy.deepcopy(net).float().eval()
    for module in list(net.modules()):  # listed first: the loop replaces children
        names = list(module._modules)
        for a, b in zip(names, names[1:]):
            conv, bn = module._modules[a], module._modules[b]
            if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d):
                module._modules[a] = torch.nn.utils.fusion.fuse_conv_bn_eval(conv, bn)
                module._modules[b] = (
                    nn.Sequential(bn.drop, bn.act) if isinstance(bn, BatchNormAct2d) else nn.Identity()
                )
    return net.requires_grad_(False)


class EfficientNetTower(nn.Module):
    """A frozen ImageNet EfficientNet-Lite (timm architecture) + a trainable full-resolution stem.

    Fine-tuning the pretrained network on a narrow synthetic defect recipe overwrites what ImageNet taught
    (measured: unseen-defect SRCC fell back to that of a from-scratch model), so its weights and batch-norm
    statistics stay as loaded (`train()` keeps it in eval mode); what learns is the projection of its
    statistics, the stem, and everything after the tower. Weights come from `pretrained`: a `.safetensors`
    file, or the name of the pip package that ships them (see `mint_iqa.models.pretrained`).

    The frozen network runs as a copy with its batch norms folded into the convolutions (`fold_batchnorm`),
    in channels-last layout (together 2.2x faster on CPU), built on first use and again after its weights
    load or move; the stored weights stay the network's own, so models saved before read the same.
    """

    def __init__(
        self,
        model: str = "efficientnet_lite0",
        pretrained: str | None = None,
        stages: tuple[int, ...] = (1, 2, 3, 4),
        width: int = 128,
        local: list[int] | None = None,
        mscn: bool = True,
        classes: bool = False,
        **_: Any,
    ):
        super().__init__()
        import timm

        self.backbone = timm.create_model(
            model, pretrained=False, features_only=True, out_indices=tuple(stages)
        )
        self.backbone.requires_grad_(False)
        self.head = None  # with `classes`: the network's own ImageNet head over its last stage, frozen too
        if classes:
            if tuple(stages)[-1] != 4:
                raise ValueError("vision.classes reads the last stage: vision.stages must end with 4")
            full = timm.create_model(model, pretrained=False)
            if pretrained:
                from mint_iqa.models.pretrained import efficientnet_state_dict

                full.load_state_dict(efficientnet_state_dict(pretrained, full.state_dict()))
            self.head = nn.Sequential(full.conv_head, full.bn2, full.global_pool, full.classifier)
            self.head.requires_grad_(False)
        self.mscn = MSCN() if mscn and local else None
        self.local = conv_stem(3 + (1 if self.mscn else 0), list(local)) if local else None
        channels = 2 * sum(self.backbone.feature_info.channels()) + (local[-1] if local else 0)
        self.norm = nn.LayerNorm(channels)
        self.proj = nn.Linear(channels, width)
        self.ln = nn.LayerNorm(width)
        self.dim, self.image_size = width, None
        if pretrained:
            from mint_iqa.models.pretrained import efficientnet_state_dict

            self.backbone.load_state_dict(efficientnet_state_dict(pretrained, self.backbone.state_dict()))
        self.__dict__["_folded"] = None  # (backbone, head) folded; not a submodule: never saved or trained
        self.register_load_state_dict_post_hook(lambda module, _: module.__dict__.update(_folded=None))

    def _apply(self, fn, *args, **kwargs):  # .to(), .float(), ...: the folded copy follows on next use
        self.__dict__["_folded"] = None
        return super()._apply(fn, *args, **kwargs)

    def folded(self) -> tuple[nn.Module, nn.Module | None]:
        """The frozen network and ImageNet head with their batch norms folded, on the weights' device and
        dtype."""
        if self._folded is None:
            w = next(self.backbone.parameters())
            self.__dict__["_folded"] = tuple(
                fold_batchnorm(m).to(w.device, w.dtype, memory_format=torch.channels_last)
                if m is not None
                else None
                for m in (self.backbone, self.head)
            )
        return self._folded

    def train(self, mode: bool = True) -> EfficientNetTower:
        super().train(mode)
        self.backbone.eval()  # frozen: batch-norm statistics stay ImageNet's
        if self.head is not None:
            self.head.eval()
        return self

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.encode(images)[0]

    def encode(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Patch tokens (B, N, width), and with `classes` the ImageNet probabilities (B, 1000) of the same
        pass (`mint_iqa.models.words` reads them)."""
        x = (images - 0.5) / 0.5  # EfficientNet-Lite's input normalisation
        backbone, head = self.folded()
        with torch.no_grad():
            maps = backbone(x.contiguous(memory_format=torch.channels_last))
            probs = head(maps[-1]).float().softmax(dim=-1) if head is not None else None
        grid = tuple(maps[-1].shape[-2:])
        feats = [_cell_stats(maps, grid)]
        if self.local is not None:
            inp = torch.cat([x, self.mscn(images)], dim=1) if self.mscn is not None else x
            feats.append(F.adaptive_avg_pool2d(self.local(inp), grid).float())
        tokens = torch.cat(feats, dim=1).flatten(2).transpose(1, 2)
        return self.ln(self.proj(self.norm(tokens.to(self.proj.weight.dtype)))), probs

    def freeze(self, fix_rate: float) -> None:
        """The pretrained network is always frozen; the stem and projection learn (`fix_rate` is for
        towers trained in part)."""


class OpenClipTower(nn.Module):
    def __init__(self, model: str, pretrained: str | None = None, **_: Any):
        super().__init__()
        import open_clip

        if pretrained and Path(pretrained).suffix and Path(pretrained).suffix != ".safetensors":
            raise ValueError(
                f"{pretrained}: local open_clip weights must be a .safetensors file (no pickles)"
            )
        clip = open_clip.create_model(model, pretrained=pretrained or None, load_weights=bool(pretrained))
        self.visual = clip.visual
        self.visual.output_tokens = True
        size = self.visual.image_size
        self.image_size = size[0] if isinstance(size, (tuple, list)) else size
        self.dim = self.visual.transformer.width
        self.register_buffer("mean", torch.tensor(CLIP_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(CLIP_STD).view(1, 3, 1, 1), persistent=False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        _, tokens = self.visual((images - self.mean) / self.std)
        return tokens

    def freeze(self, fix_rate: float) -> None:
        v = self.visual
        _freeze(list(v.transformer.resblocks), fix_rate, [v.conv1, v.ln_pre])
        if fix_rate > 0:
            v.class_embedding.requires_grad_(False)
            v.positional_embedding.requires_grad_(False)


class InstructBlipTower(nn.Module):
    """EVA ViT-g of InstructBLIP; built from a config, weights loaded by `models.factory`."""

    def __init__(self, vision_config: Any, **_: Any):
        super().__init__()
        from transformers import InstructBlipVisionModel

        self.model = InstructBlipVisionModel(vision_config)
        self.image_size = vision_config.image_size
        self.dim = vision_config.hidden_size
        self.register_buffer("mean", torch.tensor(CLIP_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(CLIP_STD).view(1, 3, 1, 1), persistent=False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.model(pixel_values=(images - self.mean) / self.std).last_hidden_state

    def freeze(self, fix_rate: float) -> None:
        _freeze(list(self.model.encoder.layers), fix_rate, [self.model.embeddings])


def resize_for(tower: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """Fixed-size towers get bicubic-resized input; the tiny tower reads any size as is."""
    size = getattr(tower, "image_size", None)
    if size is None or images.shape[-2:] == (size, size):
        return images
    return F.interpolate(images, size=(size, size), mode="bicubic", align_corners=False, antialias=True)


def token_grid(n: int) -> int:
    return int(math.isqrt(n))
