"""Init patterns of modern real models, written the way their libraries write them.

Each class reproduces, at toy size, code from a real model that initaudit got wrong:

- ``LayerScale``: per-channel constants shaped (C,1,1) and (C,1,1,1): torchvision ConvNeXt's
  ``layer_scale = ones(C,1,1) * 1e-6``, timm NF-RegNet's ``gain = ones(C,1,1,1)``, Swin-v2's
  ``logit_scale = log(10 * ones(heads,1,1))``. None of them is a symmetry problem.
- ``SwinRelativePosition``: torchvision Swin's ``relative_position_index`` (meshgrid, stack,
  flatten, permute, in-place index arithmetic, sum) and Swin-v2's ``relative_coords_table``.
- ``WhisperSinusoids``: transformers Whisper's ``arange(L).view(-1, 1) * inv.view(1, -1)``
  positional table, copied into an embedding.
- ``SlicedBackbone``: torchvision SSDlite's sliced ``nn.Sequential`` (it keeps the original keys
  '1', '2', '3') and its build-time eval forward on zeros to find the channel counts.
"""

from __future__ import annotations

import math

import torch
from torch import nn


class LayerScale(nn.Module):
    """ConvNeXt / NF-RegNet / Swin-v2 per-channel constants beside real weight matrices."""

    def __init__(self, dim: int = 8, heads: int = 2):
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, kernel_size=7, padding=3, groups=dim)
        self.pwconv = nn.Linear(dim, 4 * dim)
        self.layer_scale = nn.Parameter(torch.ones(dim, 1, 1) * 1e-6)
        self.gain = nn.Parameter(torch.ones((dim, 1, 1, 1)))
        self.logit_scale = nn.Parameter(torch.log(10 * torch.ones((heads, 1, 1))))


class SwinRelativePosition(nn.Module):
    """torchvision's ShiftedWindowAttention(V2) relative-position buffers."""

    def __init__(self, window: tuple[int, int] = (3, 3), heads: int = 2):
        super().__init__()
        self.window_size = window
        self.num_heads = heads
        self.relative_position_bias_table = nn.Parameter(
            torch.zeros((2 * window[0] - 1) * (2 * window[1] - 1), heads)
        )
        nn.init.trunc_normal_(self.relative_position_bias_table, std=0.02)
        coords_h = torch.arange(self.window_size[0])
        coords_w = torch.arange(self.window_size[1])
        coords = torch.stack(torch.meshgrid(coords_h, coords_w, indexing="ij"))  # 2, Wh, Ww
        coords_flatten = torch.flatten(coords, 1)  # 2, Wh*Ww
        relative_coords = coords_flatten[:, :, None] - coords_flatten[:, None, :]
        relative_coords = relative_coords.permute(1, 2, 0).contiguous()  # Wh*Ww, Wh*Ww, 2
        relative_coords[:, :, 0] += self.window_size[0] - 1  # shift to start from 0
        relative_coords[:, :, 1] += self.window_size[1] - 1
        relative_coords[:, :, 0] *= 2 * self.window_size[1] - 1
        relative_position_index = relative_coords.sum(-1).flatten()  # Wh*Ww*Wh*Ww
        self.register_buffer("relative_position_index", relative_position_index)
        # Swin-v2's log-spaced coordinate table
        relative_coords_h = torch.arange(-(window[0] - 1), window[0], dtype=torch.float32)
        relative_coords_w = torch.arange(-(window[1] - 1), window[1], dtype=torch.float32)
        table = torch.stack(torch.meshgrid([relative_coords_h, relative_coords_w], indexing="ij"))
        table = table.permute(1, 2, 0).contiguous().unsqueeze(0)  # 1, 2*Wh-1, 2*Ww-1, 2
        table[:, :, :, 0] /= window[0] - 1
        table[:, :, :, 1] /= window[1] - 1
        table *= 8  # normalize to -8, 8
        table = torch.sign(table) * torch.log2(torch.abs(table) + 1.0) / 3.0
        self.register_buffer("relative_coords_table", table)
        self.logit_scale = nn.Parameter(torch.log(10 * torch.ones((heads, 1, 1))))
        self.proj = nn.Linear(4, 4)


def sinusoids(length: int, channels: int, max_timescale: float = 10000) -> torch.Tensor:
    """transformers' Whisper positional table."""
    log_timescale_increment = math.log(max_timescale) / (channels // 2 - 1)
    inv_timescales = torch.exp(-log_timescale_increment * torch.arange(channels // 2))
    scaled_time = torch.arange(length).view(-1, 1) * inv_timescales.view(1, -1)
    return torch.cat([scaled_time.sin(), scaled_time.cos()], dim=1)


class WhisperSinusoids(nn.Module):
    """Whisper's encoder: a fixed sinusoidal table copied into an embedding after init."""

    def __init__(self, length: int = 32, dim: int = 32):
        super().__init__()
        self.conv = nn.Conv1d(4, dim, kernel_size=3, padding=1)
        self.embed_positions = nn.Embedding(length, dim)
        self.embed_positions.requires_grad_(False)
        with torch.no_grad():
            self.embed_positions.weight.copy_(sinusoids(length, dim))


class SqueezeExcitation(nn.Module):
    """torchvision's SE block (not subscriptable)."""

    def __init__(self, channels: int, squeeze: int):
        super().__init__()
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(channels, squeeze, 1)
        self.fc2 = nn.Conv2d(squeeze, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.avgpool(x)
        return x * torch.sigmoid(self.fc2(torch.relu(self.fc1(s))))


class SlicedBackbone(nn.Module):
    """SSDlite's backbone: slices of an ``nn.Sequential`` keep their original keys."""

    def __init__(self):
        super().__init__()
        backbone = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1),
            nn.BatchNorm2d(8),
            SqueezeExcitation(8, 4),
            nn.Conv2d(8, 8, 3, padding=1),
        )
        self.features = nn.Sequential(backbone[:1], backbone[1:])  # keys '0' and '1', '2', '3'
        # torchvision's retrieve_out_channels: one eval forward on zeros inside the build
        self.features.eval()
        with torch.no_grad():
            out = self.features(torch.zeros((1, 3, 8, 8)))
        self.features.train()
        self.head = nn.Conv2d(out.shape[1], 4, 1)
