"""SAM architectures by name: the official ViT-B/L/H, MobileSAM's TinyViT and a tiny one for CPU tests."""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import partial

import torch
from segment_anything.modeling import (
    ImageEncoderViT,
    MaskDecoder,
    PromptEncoder,
    Sam,
    TwoWayTransformer,
)

IMAGE_SIZE = 1024  # SAM's input side in pixels; the image embedding is IMAGE_SIZE / 16 tokens a side
PATCH_SIZE = 16
PROMPT_EMBED_DIM = 256


@dataclass(frozen=True)
class SamVariant:
    """Image-encoder hyper-parameters of one SAM architecture (everything else is shared).

    encoder: ``"vit"`` (SAM's ``ImageEncoderViT``, built from the fields below) or ``"tiny_vit"``
    (MobileSAM's TinyViT, whose hyper-parameters are fixed: :mod:`histoclick.models.tiny_vit`;
    ``embed_dim`` is then its last stage's width, ``depth`` its blocks over all stages and
    ``num_heads`` its last stage's heads, what recognises it in a state_dict).
    """

    name: str
    embed_dim: int
    depth: int
    num_heads: int
    global_attn_indexes: tuple[int, ...]
    encoder: str = "vit"


VARIANTS: dict[str, SamVariant] = {
    v.name: v
    for v in (
        SamVariant("vit_b", 768, 12, 12, (2, 5, 8, 11)),
        SamVariant("vit_l", 1024, 24, 16, (5, 11, 17, 23)),
        SamVariant("vit_h", 1280, 32, 16, (7, 15, 23, 31)),
        # MobileSAM: SAM's prompt encoder and mask decoder behind a distilled 6M-parameter TinyViT.
        SamVariant("vit_t", 320, 12, 10, (), encoder="tiny_vit"),
        # Not an official model: the smallest encoder that keeps SAM's real prompt encoder and
        # mask decoder, so tests exercise every code path in seconds on a CPU.
        SamVariant("vit_tiny", 96, 2, 3, (1,)),
    )
}

# The key of an encoder's first tensor, and the pattern naming its blocks, in a SAM state_dict.
_ENCODER_LAYOUTS = {
    "vit": ("image_encoder.patch_embed.proj.weight", re.compile(r"image_encoder\.(blocks\.\d+)\.")),
    "tiny_vit": (
        "image_encoder.patch_embed.seq.0.c.weight",
        re.compile(r"image_encoder\.(layers\.\d+\.blocks\.\d+)\."),
    ),
}


def build_sam(variant: SamVariant) -> Sam:
    """Build an untrained SAM of ``variant`` from segment_anything's modules (as build_sam does;
    ``vit_t`` as MobileSAM's build_sam_vit_t does, with segment_anything's prompt encoder and
    mask decoder, the same code as mobile_sam's)."""
    embedding_size = IMAGE_SIZE // PATCH_SIZE
    return Sam(
        image_encoder=_image_encoder(variant),
        prompt_encoder=PromptEncoder(
            embed_dim=PROMPT_EMBED_DIM,
            image_embedding_size=(embedding_size, embedding_size),
            input_image_size=(IMAGE_SIZE, IMAGE_SIZE),
            mask_in_chans=16,
        ),
        mask_decoder=MaskDecoder(
            num_multimask_outputs=3,
            transformer=TwoWayTransformer(
                depth=2, embedding_dim=PROMPT_EMBED_DIM, mlp_dim=2048, num_heads=8
            ),
            transformer_dim=PROMPT_EMBED_DIM,
            iou_head_depth=3,
            iou_head_hidden_dim=256,
        ),
        pixel_mean=[123.675, 116.28, 103.53],
        pixel_std=[58.395, 57.12, 57.375],
    )


def _image_encoder(variant: SamVariant) -> torch.nn.Module:
    if variant.encoder == "tiny_vit":
        from .tiny_vit import mobile_sam_encoder  # imports mobile_sam and timm: only when used

        return mobile_sam_encoder(IMAGE_SIZE)
    return ImageEncoderViT(
        depth=variant.depth,
        embed_dim=variant.embed_dim,
        img_size=IMAGE_SIZE,
        mlp_ratio=4,
        norm_layer=partial(torch.nn.LayerNorm, eps=1e-6),
        num_heads=variant.num_heads,
        patch_size=PATCH_SIZE,
        qkv_bias=True,
        use_rel_pos=True,
        global_attn_indexes=variant.global_attn_indexes,
        window_size=14,
        out_chans=PROMPT_EMBED_DIM,
    )


def variant_of_state_dict(state_dict: dict[str, torch.Tensor]) -> SamVariant | None:
    """Recognise the architecture of a SAM state_dict from its encoder's layout, width (the
    channels entering the neck) and depth."""
    neck = state_dict.get("image_encoder.neck.0.weight")
    for encoder, (first_key, block) in _ENCODER_LAYOUTS.items():
        if first_key not in state_dict or neck is None or neck.ndim != 4:
            continue
        depth = len({m.group(1) for key in state_dict if (m := block.match(key))})
        for variant in VARIANTS.values():
            if (variant.encoder, variant.embed_dim, variant.depth) == (encoder, neck.shape[1], depth):
                return variant
    return None
