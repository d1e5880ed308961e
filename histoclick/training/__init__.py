"""Fine-tuning SAM on annotated tiles with simulated clicks.

>>> from histoclick import load_model
>>> from histoclick.datasets.folders import FolderDataset
>>> from histoclick.training import FinetuneConfig, TileSet, finetune
>>> tiles = TileSet.from_dataset(FolderDataset("camelyon16_mini"))          # doctest: +SKIP
>>> result = finetune(load_model("vit_b"), tiles, "runs/md", FinetuneConfig(scenario="md"))  # doctest: +SKIP
>>> model = load_model(result.best)  # chosen on result.val; report on result.test  # doctest: +SKIP
"""

from .clicks import next_training_click
from .data import TileSet, TrainingData
from .losses import LOSSES, bce_loss, dice_loss, normalized_focal_loss
from .loop import ClickTrainingConfig, FinetuneConfig, FinetuneResult, distributed_device, finetune
from .scenarios import SCENARIOS, apply_scenario, frozen_encoder

__all__ = [
    "LOSSES",
    "SCENARIOS",
    "ClickTrainingConfig",
    "FinetuneConfig",
    "FinetuneResult",
    "TileSet",
    "TrainingData",
    "apply_scenario",
    "bce_loss",
    "dice_loss",
    "distributed_device",
    "finetune",
    "frozen_encoder",
    "next_training_click",
    "normalized_focal_loss",
]
