"""The census's failing implementations with their suspected rounding removed and nothing else changed
(reports/census/mechanisms.md).

Each passes the census's audit where the implementation itself fails, which confirms its mechanism;
``python reports/generate.py --census-checks`` audits every one (CENSUS_CHECKS there), or one by hand:

    python -m normcheck audit reports/census_fixes.py:FixedDeepseekV4   # add --weight-offset 1 for MuseSpark,
        # VideoPrism, Moonshine and Nemotron, --layout nchw for Eomt and VitDet, --layout ncl for SqueezeBert

``Fixed*``: every rounding the mechanism names removed. ``KernelFixed*``: torch's CPU layer_norm run on float32
copies and nothing else (for the implementations that call it): what still fails is not torch's kernel.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from transformers.models.chameleon.modeling_chameleon import ChameleonLayerNorm
from transformers.models.deepseek_v4.modeling_deepseek_v4 import DeepseekV4UnweightedRMSNorm
from transformers.models.dinov3_convnext.modeling_dinov3_convnext import DINOv3ConvNextLayerNorm
from transformers.models.eomt.modeling_eomt import EomtLayerNorm2d
from transformers.models.esm.modeling_esmfold import EsmFoldLayerNorm
from transformers.models.esmc.modeling_esmc import EsmcLayerNorm
from transformers.models.gradium_phonon_tts.modeling_gradium_phonon_tts import GradiumPhononTTSFlowLayerNorm
from transformers.models.imagegpt.modeling_imagegpt import ImageGPTLayerNorm
from transformers.models.moonshine_streaming.modeling_moonshine_streaming import MoonshineStreamingLayerNorm
from transformers.models.muse_spark.modeling_muse_spark import MuseSparkTextCenteredRMSNorm
from transformers.models.nemotron.modeling_nemotron import NemotronLayerNorm1P
from transformers.models.pocket_tts.modeling_pocket_tts import PocketTTSFlowLayerNorm
from transformers.models.sam.modeling_sam import SamLayerNorm
from transformers.models.squeezebert.modeling_squeezebert import SqueezeBertLayerNorm
from transformers.models.videoprism.modeling_videoprism import VideoPrismLayerNorm
from transformers.models.vitdet.modeling_vitdet import VitDetLayerNorm

_layer_norm = F.layer_norm


def _up(t: torch.Tensor | None) -> torch.Tensor | None:
    return None if t is None else t.float()


def _fp32_layer_norm(x, shape, weight=None, bias=None, eps=1e-5) -> torch.Tensor:
    """torch's layer_norm on float32 copies (its statistics saved in float32), cast back once."""
    return _layer_norm(x.float(), shape, _up(weight), _up(bias), eps).to(x.dtype)


@contextlib.contextmanager
def fp32_layer_norm() -> Iterator[None]:
    """``F.layer_norm`` (which nn.LayerNorm and the transformers classes call) on float32 copies, for a while."""
    F.layer_norm = _fp32_layer_norm
    try:
        yield
    finally:
        F.layer_norm = _layer_norm


class FixedDeepseekV4(DeepseekV4UnweightedRMSNorm):
    """rstd kept in float32."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x.float() * torch.rsqrt(x.float().square().mean(-1, keepdim=True) + self.eps)).to(x.dtype)


def _flow_fp32(self, h: torch.Tensor) -> torch.Tensor:
    """The flow layer norm's own ops on a float32 copy, cast, then its affine in the input dtype."""
    hf = h.float()
    hf = (hf - hf.mean(-1, keepdim=True)) * torch.rsqrt(hf.var(-1, unbiased=False, keepdim=True) + self.eps)
    return hf.to(h.dtype) * self.weight + self.bias


class FixedGradiumPhononTTS(GradiumPhononTTSFlowLayerNorm):
    forward = _flow_fp32


class FixedPocketTTS(PocketTTSFlowLayerNorm):
    forward = _flow_fp32


class FixedImageGPT(ImageGPTLayerNorm):
    """The same ops on a float32 copy, cast, times w in the input dtype."""

    def forward(self, tensor: torch.Tensor) -> torch.Tensor:
        t = tensor.float()
        t = t / torch.sqrt(torch.mean(torch.square(t), axis=-1, keepdim=True) + self.eps)
        return t.to(tensor.dtype) * self.weight


class FixedMuseSpark(MuseSparkTextCenteredRMSNorm):
    """1 + w in float32 (Gemma's order)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (self._norm(x.float()) * (1.0 + self.weight.float())).type_as(x)


class FixedVideoPrism(VideoPrismLayerNorm):
    """1 + w in float32 and torch's kernel on float32 copies."""

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        weight = self.weight.float() + 1.0
        return _fp32_layer_norm(hidden_states, self.normalized_shape, weight, self.bias, self.eps)


class KernelFixedVideoPrism(VideoPrismLayerNorm):
    """torch's kernel on float32 copies; 1 + w still rounded to the weight dtype."""

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        with fp32_layer_norm():
            return super().forward(hidden_states)


class FixedMoonshine(MoonshineStreamingLayerNorm):
    """All in float32, 1 + gamma included, one cast."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (self.ln(x.float()) * (self.gamma.float() + self.unit_offset)).to(x.dtype)


class KernelFixedMoonshine(MoonshineStreamingLayerNorm):
    """torch's kernel on float32 copies; gamma + 1 and the scale still in the input dtype."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with fp32_layer_norm():
            return super().forward(x)


class KernelFixedChameleon(ChameleonLayerNorm):
    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        with fp32_layer_norm():
            return super().forward(hidden_states)


class KernelFixedSam(SamLayerNorm):
    def forward(self, features: torch.Tensor) -> torch.Tensor:
        with fp32_layer_norm():
            return super().forward(features)


class KernelFixedEsmFold(EsmFoldLayerNorm):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with fp32_layer_norm():
            return super().forward(x)


class KernelFixedEsmc(EsmcLayerNorm):
    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        with fp32_layer_norm():
            return super().forward(hidden_states)


class KernelFixedDINOv3ConvNext(DINOv3ConvNextLayerNorm):
    def forward(self, features: torch.Tensor) -> torch.Tensor:
        with fp32_layer_norm():
            return super().forward(features)


class FixedNemotron1P(NemotronLayerNorm1P):
    """1 + w in float32 and torch's kernel on float32 copies."""

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return _fp32_layer_norm(input, self.normalized_shape, self.weight.float() + 1.0, self.bias, self.eps)


class KernelFixedNemotron1P(NemotronLayerNorm1P):
    """torch's kernel on float32 copies; 1 + w still rounded to the weight dtype."""

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        with fp32_layer_norm():
            return super().forward(input)


class KernelFixedEomt2d(EomtLayerNorm2d):
    def forward(self, hidden_state: torch.Tensor) -> torch.Tensor:
        with fp32_layer_norm():
            return super().forward(hidden_state)


class KernelFixedSqueezeBert(SqueezeBertLayerNorm):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with fp32_layer_norm():
            return super().forward(x)


class FixedVitDet(VitDetLayerNorm):
    """The same ops on a float32 copy, cast, then the affine in the input dtype."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x.float()
        u = h.mean(1, keepdim=True)
        h = (h - u) / torch.sqrt((h - u).pow(2).mean(1, keepdim=True) + self.eps)
        return self.weight[:, None, None] * h.to(x.dtype) + self.bias[:, None, None]
