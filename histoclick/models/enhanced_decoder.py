"""The enhanced mask decoder: SAM's two-way transformer followed by global self-attention over the
image tokens and a small convolutional upsampler that predicts one mask directly.

It is a drop-in replacement for segment_anything's ``MaskDecoder`` (same forward signature and
outputs), so ``sam.mask_decoder = EnhancedMaskDecoder.from_sam(sam.mask_decoder)`` makes
:class:`~histoclick.models.SamModel` and :class:`~histoclick.ClickSession` use it unchanged. SAM's
prompt encoder stays outside, as in SAM.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from segment_anything.modeling import MaskDecoder
from segment_anything.modeling.mask_decoder import MLP
from torch import nn

NORMS = ("layer", "group", "none")
ACTIVATIONS = {"gelu": nn.GELU, "relu": nn.ReLU, "silu": nn.SiLU}


@dataclass(frozen=True)
class EnhancedDecoderConfig:
    """Hyper-parameters of :class:`EnhancedMaskDecoder`.

    width: ``C``, channels of the UpConv and Conv blocks. The Conv block runs at 256x256, so its
        cost grows with ``C**2``; with the defaults a click costs 1.07-1.13x SAM's decoder on a
        CPU (``benchmarks/bench_training.py``).
    heads: heads of the global self-attention (must divide ``attention_dim``).
    attention_dim: query/key/value width inside the global self-attention (SAM's tokens are 256
        wide; attention runs at this reduced width for speed).
    kv_pool: keys and values are average-pooled over ``kv_pool x kv_pool`` image tokens (64x64
        queries attend to 32x32 keys with 2), which keeps attention global at a quarter of the
        cost; 1 attends to every token.
    norm: normalisation after each convolution: ``"layer"`` (channel LayerNorm, as in SAM's
        upscaler), ``"group"`` (GroupNorm, 8 channels per group) or ``"none"``.
    activation: ``"gelu"`` (SAM's choice), ``"relu"`` or ``"silu"``.
    """

    width: int = 16
    heads: int = 2
    attention_dim: int = 32
    kv_pool: int = 2
    norm: str = "layer"
    activation: str = "gelu"

    def __post_init__(self) -> None:
        if self.width < 2 or self.width % 2:
            raise ValueError(f"width must be an even number >= 2, got {self.width}")
        if self.attention_dim % self.heads:
            raise ValueError(
                f"heads ({self.heads}) must divide attention_dim ({self.attention_dim})"
            )
        if self.kv_pool < 1:
            raise ValueError(f"kv_pool must be >= 1, got {self.kv_pool}")
        if self.norm not in NORMS:
            raise ValueError(f"norm must be one of {', '.join(NORMS)}, got {self.norm!r}")
        if self.activation not in ACTIVATIONS:
            raise ValueError(
                f"activation must be one of {', '.join(ACTIVATIONS)}, got {self.activation!r}"
            )


class GlobalSelfAttention(nn.Module):
    """Post-norm residual self-attention over image tokens, positional encoding added to queries
    and keys (as in SAM's two-way transformer).

    Args:
        dim: token width (256 in SAM).
        attention_dim: width of queries, keys and values.
        heads: number of heads.
        kv_pool: average-pooling stride of keys and values on the token grid.
    """

    def __init__(self, dim: int, attention_dim: int, heads: int, kv_pool: int) -> None:
        super().__init__()
        self.heads = heads
        self.kv_pool = kv_pool
        self.q_proj = nn.Linear(dim, attention_dim)
        self.k_proj = nn.Linear(dim, attention_dim)
        self.v_proj = nn.Linear(dim, attention_dim)
        self.out_proj = nn.Linear(attention_dim, dim)
        self.norm = nn.LayerNorm(dim)

    def forward(self, tokens: torch.Tensor, pe: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        """``tokens`` and ``pe``: ``(B, H*W, dim)`` in row-major order of the ``size = (H, W)`` grid."""
        b, n, c = tokens.shape
        with_pe = tokens + pe
        q, k, v = self.q_proj(with_pe), self.k_proj(with_pe), self.v_proj(tokens)
        if self.kv_pool > 1:
            # Pooling commutes with the (affine) projections; after them it moves 8x less data.
            k, v = self._pool(k, size), self._pool(v, size)
        out = F.scaled_dot_product_attention(self._split(q), self._split(k), self._split(v))
        out = out.transpose(1, 2).reshape(b, n, -1)
        return self.norm(tokens + self.out_proj(out))

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        return x.reshape(b, n, self.heads, c // self.heads).transpose(1, 2)

    def _pool(self, x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        """Mean of each ``kv_pool x kv_pool`` cell of the token grid, in token layout."""
        b, n, c = x.shape
        h, w, p = *size, self.kv_pool
        if h % p or w % p:
            raise ValueError(f"kv_pool {p} must divide the {h}x{w} token grid of the image embedding")
        cells = x.reshape(b, h // p, p, w // p, p, c)
        return cells.mean(dim=(2, 4)).reshape(b, (h // p) * (w // p), c)


class ChannelLayerNorm(nn.Module):
    """LayerNorm over the channels of an NCHW tensor, like SAM's ``LayerNorm2d`` (same
    parameters), computed by one fused kernel on the channels-last layout the decoder uses."""

    def __init__(self, channels: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        nhwc = x.permute(0, 2, 3, 1)
        return F.layer_norm(nhwc, self.weight.shape, self.weight, self.bias, self.eps).permute(0, 3, 1, 2)


def _norm(kind: str, channels: int) -> nn.Module:
    if kind == "layer":
        return ChannelLayerNorm(channels)
    if kind == "group":
        return nn.GroupNorm(max(1, channels // 8), channels)
    return nn.Identity()


def _conv_unit(conv: nn.Module, channels: int, config: EnhancedDecoderConfig) -> list[nn.Module]:
    return [conv, _norm(config.norm, channels), ACTIVATIONS[config.activation]()]


def up_conv_block(config: EnhancedDecoderConfig) -> nn.Sequential:
    """3x3 conv C->C, 3x3 conv C->C/2, 2x2 stride-2 transposed conv C/2->C (twice the resolution)."""
    c = config.width
    return nn.Sequential(
        *_conv_unit(nn.Conv2d(c, c, 3, padding=1), c, config),
        *_conv_unit(nn.Conv2d(c, c // 2, 3, padding=1), c // 2, config),
        *_conv_unit(nn.ConvTranspose2d(c // 2, c, 2, stride=2), c, config),
    )


def conv_block(config: EnhancedDecoderConfig) -> nn.Sequential:
    """Two 3x3 convs C->C at constant resolution."""
    c = config.width
    return nn.Sequential(
        *_conv_unit(nn.Conv2d(c, c, 3, padding=1), c, config),
        *_conv_unit(nn.Conv2d(c, c, 3, padding=1), c, config),
    )


class EnhancedMaskDecoder(nn.Module):
    """Single-mask decoder with global self-attention and a convolutional upsampler.

    Pipeline (tokens 256 wide, image embedding ``64x64`` for a 1024 input):
    output tokens (IoU, mask) + sparse prompt tokens and image embedding + dense prompt ->
    SAM's two-way transformer -> global self-attention over the image tokens (SAM's dense
    positional encoding added to queries and keys) -> 1x1 conv 256->C -> two UpConv blocks
    (64 -> 128 -> 256) -> Conv block -> 1x1 conv C->1: mask logits at 4x the embedding size
    (256x256, SAM's low-resolution mask size). The IoU estimate comes from the IoU token through
    an MLP. Unlike SAM, masks are not a dot product of output tokens with upscaled features.

    Args:
        transformer: a two-way transformer (taken as is; :meth:`from_sam` copies SAM's).
        config: widths, heads, norm and activation.
        transformer_dim: token width (256 in SAM).
    """

    def __init__(
        self,
        transformer: nn.Module,
        config: EnhancedDecoderConfig = EnhancedDecoderConfig(),
        transformer_dim: int = 256,
    ) -> None:
        super().__init__()
        self.config = config
        self.transformer_dim = transformer_dim
        self.transformer = transformer
        self.iou_token = nn.Embedding(1, transformer_dim)
        self.mask_token = nn.Embedding(1, transformer_dim)
        self.global_attention = GlobalSelfAttention(
            transformer_dim, config.attention_dim, config.heads, config.kv_pool
        )
        self.input_projection = nn.Sequential(
            *_conv_unit(nn.Conv2d(transformer_dim, config.width, 1), config.width, config)
        )
        self.up1 = up_conv_block(config)
        self.up2 = up_conv_block(config)
        self.conv = conv_block(config)
        self.mask_head = nn.Conv2d(config.width, 1, 1)
        self.iou_prediction_head = MLP(transformer_dim, 256, 1, 3)

    @classmethod
    def from_sam(
        cls, decoder: MaskDecoder, config: EnhancedDecoderConfig = EnhancedDecoderConfig()
    ) -> EnhancedMaskDecoder:
        """Build from a loaded SAM decoder: copies of its two-way transformer, its IoU token,
        its single-mask output token and its IoU head (restricted to the single-mask output);
        the attention and convolution layers start from PyTorch's default initialisation."""
        enhanced = cls(copy.deepcopy(decoder.transformer), config, decoder.transformer_dim)
        device = decoder.iou_token.weight.device
        enhanced.to(device)
        with torch.no_grad():
            enhanced.iou_token.weight.copy_(decoder.iou_token.weight)
            enhanced.mask_token.weight.copy_(decoder.mask_tokens.weight[:1])
            sam_layers = decoder.iou_prediction_head.layers
            for ours, theirs in zip(enhanced.iou_prediction_head.layers[:-1], sam_layers[:-1]):
                ours.load_state_dict(theirs.state_dict())
            enhanced.iou_prediction_head.layers[-1].weight.copy_(sam_layers[-1].weight[:1])
            enhanced.iou_prediction_head.layers[-1].bias.copy_(sam_layers[-1].bias[:1])
        return enhanced

    def forward(
        self,
        image_embeddings: torch.Tensor,
        image_pe: torch.Tensor,
        sparse_prompt_embeddings: torch.Tensor,
        dense_prompt_embeddings: torch.Tensor,
        multimask_output: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Predict one mask per prompt set.

        Args:
            image_embeddings: ``(1 or B, 256, h, w)``; one embedding is shared by all B prompts.
            image_pe: ``(1, 256, h, w)`` SAM's dense positional encoding.
            sparse_prompt_embeddings: ``(B, N, 256)`` point (and box) tokens.
            dense_prompt_embeddings: ``(B, 256, h, w)`` mask-prompt embedding.
            multimask_output: ignored (one mask is always returned); kept for SAM's signature.

        Returns:
            ``(masks, iou)``: ``(B, 1, 4h, 4w)`` mask logits and ``(B, 1)`` IoU estimates.
        """
        batch = sparse_prompt_embeddings.shape[0]
        output_tokens = torch.cat([self.iou_token.weight, self.mask_token.weight], dim=0)
        tokens = torch.cat((output_tokens.expand(batch, -1, -1), sparse_prompt_embeddings), dim=1)
        src = image_embeddings.expand(batch, -1, -1, -1) + dense_prompt_embeddings
        pos = image_pe.expand(batch, -1, -1, -1)
        b, c, h, w = src.shape

        hs, src = self.transformer(src, pos, tokens)
        src = self.global_attention(src, pos.flatten(2).transpose(1, 2), (h, w))

        # (B, h*w, c) tokens are the channels-last layout of a (B, c, h, w) map: no copy, and
        # channels-last convolutions are about twice as fast on CPUs at these widths.
        x = self.input_projection(src.reshape(b, h, w, c).permute(0, 3, 1, 2))
        x = self.conv(self.up2(self.up1(x)))
        masks = self.mask_head(x)
        iou = self.iou_prediction_head(hs[:, 0, :])
        return masks, iou
