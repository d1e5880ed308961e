"""SAM models: architectures, official checkpoints, and :func:`load_model`."""

from .checkpoints import (
    CHECKPOINT_DIR_ENV,
    OFFICIAL_CHECKPOINTS,
    CheckpointError,
    checkpoint_dir,
    download_file,
    official_checkpoint,
    sha256_of,
)
from .enhanced_decoder import EnhancedDecoderConfig, EnhancedMaskDecoder
from .loading import load_model, resolve_device, save_state_dict
from .sam_model import Decoded, Embedding, SamModel
from .variants import VARIANTS, SamVariant, build_sam

__all__ = [
    "CHECKPOINT_DIR_ENV",
    "OFFICIAL_CHECKPOINTS",
    "VARIANTS",
    "CheckpointError",
    "Decoded",
    "Embedding",
    "EnhancedDecoderConfig",
    "EnhancedMaskDecoder",
    "SamModel",
    "SamVariant",
    "build_sam",
    "checkpoint_dir",
    "download_file",
    "load_model",
    "official_checkpoint",
    "resolve_device",
    "save_state_dict",
    "sha256_of",
]
