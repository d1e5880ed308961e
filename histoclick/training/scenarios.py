"""Which parts of SAM a fine-tuning run trains.

=========  ==========================  ======================================================
name       study's name                trainable parameters
=========  ==========================  ======================================================
md         SAM^MD                      mask decoder
ie_md      SAM^IE_MD                   image encoder and mask decoder
whole      SAM^Whole                   everything (image encoder, prompt encoder, decoder)
enhanced   Ours                        the enhanced mask decoder, which replaces SAM's
=========  ==========================  ======================================================

In ``md`` and ``enhanced`` the image encoder is frozen, so its embeddings can be computed once
and cached. Scenarios switch ``requires_grad`` and leave every module in the model's mode (eval,
as loaded): :func:`histoclick.training.finetune` switches to training mode only for the
trained forward passes and back to eval mode for validation and when it returns.
"""

from __future__ import annotations

from histoclick.models.enhanced_decoder import EnhancedDecoderConfig, EnhancedMaskDecoder
from histoclick.models.sam_model import SamModel

TRAINABLE_PREFIXES: dict[str, tuple[str, ...]] = {
    "md": ("mask_decoder.",),
    "ie_md": ("image_encoder.", "mask_decoder."),
    "whole": ("image_encoder.", "prompt_encoder.", "mask_decoder."),
    "enhanced": ("mask_decoder.",),
}
SCENARIOS = tuple(TRAINABLE_PREFIXES)


def frozen_encoder(scenario: str) -> bool:
    """True when the scenario leaves the image encoder frozen (embeddings can be cached)."""
    return "image_encoder." not in TRAINABLE_PREFIXES[_checked(scenario)]


def apply_scenario(
    model: SamModel, name: str, enhanced: EnhancedDecoderConfig | None = None
) -> list[str]:
    """Prepare ``model`` for fine-tuning scenario ``name`` and return its trainable parameters.

    ``enhanced`` replaces SAM's mask decoder by an :class:`EnhancedMaskDecoder` built from it
    (with config ``enhanced``, default :class:`EnhancedDecoderConfig`); a model that already has
    one (loaded from an ``enhanced`` checkpoint) keeps it. Every parameter gets
    ``requires_grad`` True exactly when it is trainable in the scenario.

    Returns:
        Names (as in ``model.sam.named_parameters()``, in that order) of the trainable parameters.
    """
    prefixes = TRAINABLE_PREFIXES[_checked(name)]
    sam = model.sam
    has_enhanced = isinstance(sam.mask_decoder, EnhancedMaskDecoder)
    if name == "enhanced":
        config = enhanced or EnhancedDecoderConfig()
        if not has_enhanced:
            decoder = EnhancedMaskDecoder.from_sam(sam.mask_decoder, config).to(model.device)
            sam.mask_decoder = decoder.train(sam.training)  # a new module would be in training mode
        elif enhanced is not None and sam.mask_decoder.config != enhanced:
            raise ValueError(
                f"the model's enhanced decoder has config {sam.mask_decoder.config}, not "
                f"{enhanced}: start from the base SAM model to train a differently shaped decoder"
            )
    elif has_enhanced:
        raise ValueError(
            f"scenario {name!r} fine-tunes SAM's own mask decoder, but this model has an enhanced "
            "decoder: start from a SAM model, or use scenario 'enhanced'"
        )
    names = []
    for param_name, param in sam.named_parameters():
        param.requires_grad_(param_name.startswith(prefixes))
        if param.requires_grad:
            names.append(param_name)
    return names


def _checked(name: str) -> str:
    if name not in TRAINABLE_PREFIXES:
        raise ValueError(f"unknown scenario {name!r}: use one of {', '.join(SCENARIOS)}")
    return name
