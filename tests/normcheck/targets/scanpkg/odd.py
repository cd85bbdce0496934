"""Norms a scan lists without auditing (a gate, a config, not a norm), and one whose forward crashes."""

import torch
from torch import nn


class GatedRMSNorm(nn.Module):
    """Needs a second input."""

    def __init__(self, hidden_size, eps=1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(hidden_size))
        self.eps = eps

    def forward(self, x, gate):
        h = x.float() * torch.nn.functional.silu(gate.float())
        return (self.weight * h * torch.rsqrt(h.square().mean(-1, keepdim=True) + self.eps)).to(x.dtype)


class ConfigLayerNorm(nn.Module):
    """Built from a config object normcheck does not have."""

    def __init__(self, config):
        super().__init__()
        self.inner = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def forward(self, x):
        return self.inner(x)


class ScalingLayerNorm(nn.Module):
    """Named like a norm, computes something else."""

    def __init__(self, hidden_size):
        super().__init__()
        self.scale = nn.Parameter(torch.full((hidden_size,), 2.0))
        self.eps = 1e-6

    def forward(self, x):
        return x * self.scale


class HalfCrashingLayerNorm(nn.LayerNorm):
    """Correct in float32; raises in float16."""

    def forward(self, x):
        if x.dtype == torch.float16:
            raise RuntimeError("no float16 kernel")
        return super().forward(x)


class ChannelsFirstLayerNorm(nn.Module):
    """Over the channels of (N, C, H, W), in float32: correct."""

    def __init__(self, num_channels, eps=1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(num_channels))
        self.bias = nn.Parameter(torch.zeros(num_channels))
        self.eps = eps

    def forward(self, x):
        h = torch.nn.functional.layer_norm(x.permute(0, 2, 3, 1).float(), x.shape[1:2], None, None, self.eps)
        return (h * self.weight.float() + self.bias.float()).permute(0, 3, 1, 2).to(x.dtype)
