"""Norms over the channels of channels-first tensors: correct ones (NCHW and NCL), and one whose statistics stay in
the input dtype (as VitDet's LayerNorm computes them)."""

import torch
import torch.nn.functional as F
from torch import nn


class LayerNorm2d(nn.Module):
    """(N, C, H, W): torch's layer norm over C on float32 copies, one cast."""

    def __init__(self, num_channels, eps=1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(num_channels))
        self.bias = nn.Parameter(torch.zeros(num_channels))
        self.eps = eps

    def forward(self, x):
        h = x.permute(0, 2, 3, 1).float()
        h = F.layer_norm(h, h.shape[-1:], self.weight.float(), self.bias.float(), self.eps)
        return h.permute(0, 3, 1, 2).to(x.dtype)


class LayerNorm1d(LayerNorm2d):
    """(N, C, L)."""

    def forward(self, x):
        return super().forward(x.unsqueeze(-1)).squeeze(-1)


class HalfLayerNorm2d(LayerNorm2d):
    """Mean and variance over C in the input dtype."""

    def forward(self, x):
        u = x.mean(1, keepdim=True)
        s = (x - u).pow(2).mean(1, keepdim=True)
        x = (x - u) / torch.sqrt(s + self.eps)
        return self.weight[:, None, None] * x + self.bias[:, None, None]
