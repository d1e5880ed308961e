"""MobileSAM's image encoder (``vit_t``): TinyViT from the ``mobile_sam`` package (PyPI
``mobilesam-mirror``), built exactly as ``mobile_sam.build_sam.build_sam_vit_t`` builds it, so its
tensors have the names and shapes of the official ``mobile_sam.pt``.

Like SAM's ViTs it takes the padded ``(B, 3, 1024, 1024)`` input and returns ``(B, 256, 64, 64)``
embeddings (it reshapes to 64 x 64 tokens internally, so no other input size works).
"""

from __future__ import annotations

import warnings

import torch

try:
    with warnings.catch_warnings():
        # mobile_sam imports timm's deprecated module paths, and registers its TinyViT builders in
        # timm's model registry under timm's own names (tiny_vit_5m_224, ...), replacing timm's
        # entries in this process; histoclick does not use timm's registry.
        warnings.filterwarnings("ignore", category=FutureWarning, module=r"timm\.")
        warnings.filterwarnings("ignore", message="Overwriting tiny_vit_", category=UserWarning)
        from mobile_sam.modeling import TinyViT
except ImportError as err:  # pragma: no cover - both are dependencies of histoclick
    raise ImportError(
        f"the vit_t (MobileSAM) model needs the mobile_sam package and timm ({err}): "
        "pip install mobilesam-mirror timm"
    ) from err


class FrozenNormTinyViT(TinyViT):
    """TinyViT whose BatchNorm layers stay in eval mode when the model trains.

    Fine-tuning (scenarios ``ie_md`` and ``whole``) then trains the norms' scale and shift but
    not their running statistics: those are buffers, which fine-tuned checkpoints (trainable
    parameters only) do not store, and batch statistics of one or two tiles would be noise.
    """

    def train(self, mode: bool = True) -> FrozenNormTinyViT:
        super().train(mode)  # TinyViT's attention layers recompute their cached biases here
        for module in self.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.eval()
        return self


def mobile_sam_encoder(image_size: int) -> FrozenNormTinyViT:
    """An untrained MobileSAM image encoder for ``image_size`` (1024) pixel inputs, with the
    hyper-parameters of ``mobile_sam.build_sam.build_sam_vit_t``."""
    return FrozenNormTinyViT(
        img_size=image_size,
        in_chans=3,
        num_classes=1000,  # an unused classification head, kept: mobile_sam.pt holds its tensors
        embed_dims=[64, 128, 160, 320],
        depths=[2, 2, 6, 2],
        num_heads=[2, 4, 5, 10],
        window_sizes=[7, 7, 14, 7],
        mlp_ratio=4.0,
        drop_rate=0.0,
        drop_path_rate=0.0,
        use_checkpoint=False,
        mbconv_expand_ratio=4.0,
        local_conv_size=3,
        layer_lr_decay=0.8,
    )
