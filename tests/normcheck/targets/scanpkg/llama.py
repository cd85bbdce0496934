"""A correct RMSNorm in Llama's cast order, and a correct RMSNorm function."""

import torch
from torch import nn


class LlamaStyleRMSNorm(nn.Module):
    """Statistic in float32, cast back, then the weight in the input dtype."""

    def __init__(self, hidden_size, eps=1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(hidden_size))
        self.variance_epsilon = eps

    def forward(self, hidden_states):
        input_dtype = hidden_states.dtype
        hidden_states = hidden_states.to(torch.float32)
        variance = hidden_states.pow(2).mean(-1, keepdim=True)
        hidden_states = hidden_states * torch.rsqrt(variance + self.variance_epsilon)
        return self.weight * hidden_states.to(input_dtype)


def rms_norm(x, weight=None, eps=1e-6):
    """All in float32, one cast."""
    h = x.float()
    h = h * torch.rsqrt(h.square().mean(-1, keepdim=True) + eps)
    if weight is not None:
        h = h * weight.float()
    return h.to(x.dtype)
