"""SAM architectures by name: the official ViT-B/L/H and a tiny one for CPU tests."""

from __future__ import annotations

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
    """Image-encoder hyper-parameters of one SAM architecture (everything else is shared)."""

    name: str
    embed_dim: int
    depth: int
    num_heads: int
    global_attn_indexes: tuple[int, ...]


VARIANTS: dict[str, SamVariant] = {
    v.name: v
    for v in (
        SamVariant("vit_b", 768, 12, 12, (2, 5, 8, 11)),
        SamVariant("vit_l", 1024, 24, 16, (5, 11, 17, 23)),
        SamVariant("vit_h", 1280, 32, 16, (7, 15, 23, 31)),
        # Not an official model: the smallest encoder that keeps SAM's real prompt encoder and
        # mask decoder, so tests exercise every code path in seconds on a CPU.
        SamVariant("vit_tiny", 96, 2, 3, (1,)),
    )
}


def build_sam(variant: SamVariant) -> Sam:
    """Build an untrained SAM of ``variant`` from segment_anything's modules (as build_sam does)."""
    embedding_size = IMAGE_SIZE // PATCH_SIZE
    return Sam(
        image_encoder=ImageEncoderViT(
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
        ),
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


def variant_of_state_dict(state_dict: dict[str, torch.Tensor]) -> SamVariant | None:
    """Recognise the architecture of a SAM state_dict from its encoder width and depth."""
    patch = state_dict.get("image_encoder.patch_embed.proj.weight")
    if patch is None:
        return None
    depth = len({k.split(".")[2] for k in state_dict if k.startswith("image_encoder.blocks.")})
    for variant in VARIANTS.values():
        if variant.embed_dim == patch.shape[0] and variant.depth == depth:
            return variant
    return None
