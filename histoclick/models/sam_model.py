"""SamModel: a SAM network with its name, weights identity and device, split into the two calls
the click engine needs (encode an image once, decode prompts many times)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import torch
from segment_anything.modeling import Sam
from segment_anything.utils.transforms import ResizeLongestSide


@dataclass
class Embedding:
    """SAM image embedding of one tile.

    features: ``(1, 256, 64, 64)`` tensor on the model's device.
    input_size: ``(height, width)`` of the tile after resizing its long side to 1024 pixels.
    original_size: ``(height, width)`` of the tile in tile pixels.
    """

    features: torch.Tensor
    input_size: tuple[int, int]
    original_size: tuple[int, int]


@dataclass
class Decoded:
    """Outputs of one prompt-encoder + mask-decoder call (``M`` masks: 1 or 3).

    logits: ``(M, H, W)`` float32 in tile pixels (mask = logits > 0).
    low_res_logits: ``(M, 256, 256)`` float32, SAM's mask-prompt resolution.
    predicted_iou: ``(M,)`` the decoder's IoU estimates.
    seconds: wall time of the call (device synchronised).
    """

    logits: np.ndarray
    low_res_logits: torch.Tensor
    predicted_iou: np.ndarray
    seconds: float


class SamModel:
    """A SAM network ready for click segmentation.

    Args:
        sam: the segment_anything ``Sam`` module (put in eval mode and moved to ``device``).
        name: architecture name (``vit_b``, ``vit_l``, ``vit_h``, ``vit_t``, ``vit_tiny``).
        device: torch device the model runs on.
        source: where the weights came from: a checkpoint path, or a description like
            ``"random weights (seed 0)"``.
        checkpoint_sha256: digest of the checkpoint file when known (computed lazily otherwise).
        encoder_identity: identity of the image encoder's weights when they are another model's
            (a fine-tuned decoder on a frozen encoder), so cached embeddings are shared.
    """

    def __init__(
        self,
        sam: Sam,
        name: str,
        device: torch.device,
        source: str,
        checkpoint_sha256: str | None = None,
        encoder_identity: str | None = None,
    ) -> None:
        self.sam = sam.to(device).eval()
        self.name = name
        self.device = device
        self.source = source
        self._sha256 = checkpoint_sha256
        self._encoder_identity = encoder_identity
        self.transform = ResizeLongestSide(sam.image_encoder.img_size)

    def __repr__(self) -> str:
        return f"SamModel({self.name!r}, device={str(self.device)!r}, source={self.source!r})"

    @property
    def image_size(self) -> int:
        """Side of SAM's square input in pixels (1024 for every official model)."""
        return self.sam.image_encoder.img_size

    @cached_property
    def identity(self) -> str:
        """Stable identifier of the weights, used to key embedding caches."""
        if self._sha256 is None:
            from .checkpoints import sha256_of

            self._sha256 = sha256_of(self.source)
        return f"{self.name}:{self._sha256}"

    @property
    def encoder_identity(self) -> str:
        """Stable identifier of the image encoder's weights: the key of cached embeddings."""
        return self._encoder_identity or self.identity

    def weights_changed(self, digest: str, source: str, *, encoder: bool) -> None:
        """Give the model a new identity after its weights were changed in place (fine-tuning).

        Args:
            digest: identifies the new weights (e.g. a SHA-256 of the trained tensors).
            source: where the weights now come from, for people.
            encoder: True when the image encoder's weights changed: the encoder identity (the
                key of cached embeddings) then changes too, so no embedding computed by the old
                encoder is reused; False keeps sharing the old encoder's embeddings.
        """
        previous_encoder = self.encoder_identity
        self._sha256 = digest
        self.source = source
        self.__dict__.pop("identity", None)  # the cached_property is computed again
        self._encoder_identity = None if encoder else previous_encoder

    def preprocess(self, image: np.ndarray) -> tuple[torch.Tensor, tuple[int, int]]:
        """The encoder's input for an ``(H, W, 3)`` uint8 RGB tile: its long side resized to 1024,
        normalised and padded to ``(1, 3, 1024, 1024)``; also the resized ``(height, width)``."""
        resized = self.transform.apply_image(image)
        pixels = torch.as_tensor(resized, device=self.device).permute(2, 0, 1)[None].float()
        return self.sam.preprocess(pixels), tuple(resized.shape[:2])

    @torch.inference_mode()
    def embed(self, image: np.ndarray) -> Embedding:
        """Encode an ``(H, W, 3)`` uint8 RGB tile (any size; its long side is resized to 1024)."""
        pixels, input_size = self.preprocess(image)
        return Embedding(self.sam.image_encoder(pixels), input_size, tuple(image.shape[:2]))

    @torch.inference_mode()
    def decode(
        self,
        embedding: Embedding,
        points: np.ndarray,
        labels: np.ndarray,
        mask_input: torch.Tensor | None = None,
        multimask: bool = False,
    ) -> Decoded:
        """Run the prompt encoder and mask decoder.

        Args:
            embedding: the tile's embedding from :meth:`embed`.
            points: ``(N, 2)`` click positions as ``(x, y)`` in tile pixels.
            labels: ``(N,)`` 1 for positive clicks, 0 for negative ones.
            mask_input: ``(1, 256, 256)`` low-resolution logits of the previous prediction.
            multimask: return SAM's three candidate masks instead of one.
        """
        start = time.perf_counter()
        coords = self.transform.apply_coords(np.asarray(points, dtype=np.float32), embedding.original_size)
        coords_t = torch.as_tensor(coords, dtype=torch.float32, device=self.device)[None]
        labels_t = torch.as_tensor(labels, dtype=torch.int64, device=self.device)[None]
        masks = None if mask_input is None else mask_input.to(self.device)[None]
        sparse, dense = self.sam.prompt_encoder(points=(coords_t, labels_t), boxes=None, masks=masks)
        low_res, iou = self.sam.mask_decoder(
            image_embeddings=embedding.features,
            image_pe=self.sam.prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
            multimask_output=multimask,
        )
        logits = self.sam.postprocess_masks(low_res, embedding.input_size, embedding.original_size)
        logits_np = logits[0].float().cpu().numpy()  # the copy to host synchronises the device
        seconds = time.perf_counter() - start
        return Decoded(logits_np, low_res[0].float(), iou[0].float().cpu().numpy(), seconds)
