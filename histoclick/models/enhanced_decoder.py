"""The enhanced mask decoder: SAM's mask decoder plus global self-attention over the image tokens
and a convolutional refinement of its masks, both residual and starting at zero.

It subclasses segment_anything's ``MaskDecoder`` (same parameters under the same names, same
forward signature and outputs, multimask included), so
``sam.mask_decoder = EnhancedMaskDecoder.from_sam(sam.mask_decoder)`` makes
:class:`~histoclick.models.SamModel` and :class:`~histoclick.ClickSession` use it unchanged, and a
freshly built one gives exactly SAM's outputs: training starts from SAM. SAM's prompt encoder
stays outside, as in SAM.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from segment_anything.modeling import MaskDecoder
from torch import nn

NORMS = ("layer", "group", "none")
ACTIVATIONS = {"gelu": nn.GELU, "relu": nn.ReLU, "silu": nn.SiLU}


@dataclass(frozen=True)
class EnhancedDecoderConfig:
    """Hyper-parameters of :class:`EnhancedMaskDecoder`'s additions to SAM's decoder.

    width: ``C``, channels of the refinement's UpConv and Conv blocks (its Conv block runs at
        256x256, so its cost grows with ``C**2``).
    heads: heads of the global self-attention (must divide ``attention_dim``).
    attention_dim: query/key/value width inside the global self-attention (SAM's tokens are 256
        wide: full width by default).
    kv_pool: keys and values are average-pooled over ``kv_pool x kv_pool`` image tokens (with 2,
        64x64 queries attend to 32x32 keys at a quarter of the cost); 1 (default) is full
        attention over every token.
    norm: normalisation after each convolution of the refinement: ``"layer"`` (channel
        LayerNorm, as in SAM's upscaler), ``"group"`` (GroupNorm, 8 channels per group) or
        ``"none"``.
    activation: ``"gelu"`` (SAM's choice), ``"relu"`` or ``"silu"``.

    Cost (``benchmarks/bench_training.py``, ``benchmarks/ablate_enhanced_decoder.py``, one busy
    CPU thread): the defaults add 0.32 M parameters to SAM's 4.06 M and make a click 3.4x SAM's
    decoder (2.6x inside a ClickSession); ``kv_pool=2`` brings it to 2.7x. The study reports
    +28% click time for its decoder, on a GPU.
    """

    width: int = 32
    heads: int = 8
    attention_dim: int = 256
    kv_pool: int = 1
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
    """Pre-norm residual self-attention over image tokens, positional encoding added to queries
    and keys (as in SAM's two-way transformer). Its output projection starts at zero, so a new
    layer is the identity.

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
        self.norm = nn.LayerNorm(dim)
        self.q_proj = nn.Linear(dim, attention_dim)
        self.k_proj = nn.Linear(dim, attention_dim)
        self.v_proj = nn.Linear(dim, attention_dim)
        self.out_proj = nn.Linear(attention_dim, dim)
        nn.init.zeros_(self.out_proj.weight)
        nn.init.zeros_(self.out_proj.bias)

    def forward(self, tokens: torch.Tensor, pe: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        """``tokens`` and ``pe``: ``(B, H*W, dim)`` in row-major order of the ``size = (H, W)`` grid."""
        b, n, _ = tokens.shape
        normed = self.norm(tokens)
        with_pe = normed + pe
        q, k, v = self.q_proj(with_pe), self.k_proj(with_pe), self.v_proj(normed)
        if self.kv_pool > 1:
            # Pooling commutes with the (affine) projections; after them it moves less data.
            k, v = self._pool(k, size), self._pool(v, size)
        out = F.scaled_dot_product_attention(self._split(q), self._split(k), self._split(v))
        return tokens + self.out_proj(out.transpose(1, 2).reshape(b, n, -1))

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


class EnhancedMaskDecoder(MaskDecoder):
    """SAM's mask decoder with global self-attention and a convolutional refinement.

    Pipeline (tokens 256 wide, image embedding ``64x64`` for a 1024 input): SAM's two-way
    transformer -> global self-attention over the image tokens (residual, SAM's dense positional
    encoding added to queries and keys) -> SAM's path unchanged (upscaler, hypernetwork MLPs,
    one mask per output token, IoU head) -> plus a refinement of every mask: 1x1 conv 256->C,
    two UpConv blocks (64 -> 128 -> 256), a Conv block and a 1x1 conv C->4 whose output is added
    to SAM's four mask logits. The attention's output projection and the refinement's last conv
    start at zero, so a decoder built by :meth:`from_sam` computes exactly SAM's outputs, and
    ``multimask_output`` keeps SAM's meaning.

    Args:
        transformer_dim, transformer, num_multimask_outputs, activation, iou_head_depth,
        iou_head_hidden_dim: as for segment_anything's ``MaskDecoder``.
        config: the additions' widths, heads, pooling, norm and activation.
    """

    def __init__(
        self,
        *,
        transformer_dim: int,
        transformer: nn.Module,
        config: EnhancedDecoderConfig = EnhancedDecoderConfig(),
        num_multimask_outputs: int = 3,
        activation: type[nn.Module] = nn.GELU,
        iou_head_depth: int = 3,
        iou_head_hidden_dim: int = 256,
    ) -> None:
        super().__init__(
            transformer_dim=transformer_dim,
            transformer=transformer,
            num_multimask_outputs=num_multimask_outputs,
            activation=activation,
            iou_head_depth=iou_head_depth,
            iou_head_hidden_dim=iou_head_hidden_dim,
        )
        self.config = config
        self.global_attention = GlobalSelfAttention(
            transformer_dim, config.attention_dim, config.heads, config.kv_pool
        )
        self.refinement = nn.Sequential(
            *_conv_unit(nn.Conv2d(transformer_dim, config.width, 1), config.width, config),
            up_conv_block(config),
            up_conv_block(config),
            conv_block(config),
            nn.Conv2d(config.width, self.num_mask_tokens, 1),
        )
        nn.init.zeros_(self.refinement[-1].weight)
        nn.init.zeros_(self.refinement[-1].bias)

    @classmethod
    def from_sam(
        cls, decoder: MaskDecoder, config: EnhancedDecoderConfig = EnhancedDecoderConfig()
    ) -> EnhancedMaskDecoder:
        """Build from a loaded SAM decoder: copies of all its tensors (transformer, tokens,
        upscaler, hypernetwork MLPs, IoU head); the additions start as the identity."""
        enhanced = cls(
            transformer_dim=decoder.transformer_dim,
            transformer=copy.deepcopy(decoder.transformer),
            config=config,
            num_multimask_outputs=decoder.num_multimask_outputs,
            activation=type(decoder.output_upscaling[2]),
            iou_head_depth=decoder.iou_prediction_head.num_layers,
            iou_head_hidden_dim=decoder.iou_prediction_head.layers[0].out_features,
        ).to(decoder.iou_token.weight.device)
        missing, unexpected = enhanced.load_state_dict(decoder.state_dict(), strict=False)
        added = ("global_attention.", "refinement.")
        if unexpected or any(not name.startswith(added) for name in missing):
            raise ValueError(f"not a SAM mask decoder: unexpected {unexpected[:3]}, missing {missing[:3]}")
        return enhanced

    def predict_masks(
        self,
        image_embeddings: torch.Tensor,
        image_pe: torch.Tensor,
        sparse_prompt_embeddings: torch.Tensor,
        dense_prompt_embeddings: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """SAM's ``MaskDecoder.predict_masks`` with the global attention after its transformer
        and the refinement added to its masks: ``(B, 4, 4h, 4w)`` logits, ``(B, 4)`` IoU."""
        output_tokens = torch.cat([self.iou_token.weight, self.mask_tokens.weight], dim=0)
        output_tokens = output_tokens.unsqueeze(0).expand(sparse_prompt_embeddings.size(0), -1, -1)
        tokens = torch.cat((output_tokens, sparse_prompt_embeddings), dim=1)
        src = torch.repeat_interleave(image_embeddings, tokens.shape[0], dim=0) + dense_prompt_embeddings
        pos_src = torch.repeat_interleave(image_pe, tokens.shape[0], dim=0)
        b, c, h, w = src.shape

        hs, src = self.transformer(src, pos_src, tokens)
        src = self.global_attention(src, pos_src.flatten(2).transpose(1, 2), (h, w))
        mask_tokens_out = hs[:, 1 : (1 + self.num_mask_tokens), :]
        src = src.transpose(1, 2).reshape(b, c, h, w)
        upscaled = self.output_upscaling(src)
        hyper_in = torch.stack(
            [mlp(mask_tokens_out[:, i, :]) for i, mlp in enumerate(self.output_hypernetworks_mlps)], dim=1
        )
        b, c, h, w = upscaled.shape
        masks = (hyper_in @ upscaled.view(b, c, h * w)).view(b, -1, h, w)
        masks = masks + self.refinement(src)
        return masks, self.iou_prediction_head(hs[:, 0, :])
