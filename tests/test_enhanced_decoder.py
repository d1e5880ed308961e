"""EnhancedMaskDecoder on the tiny SAM: shapes, initialisation from SAM, use inside ClickSession."""

import numpy as np
import pytest
import torch

from histoclick import ClickSession, load_model
from histoclick.datasets.synthetic import make_tile
from histoclick.models.enhanced_decoder import EnhancedDecoderConfig, EnhancedMaskDecoder


@pytest.fixture(scope="module")
def sam():
    return load_model("vit_tiny", device="cpu", seed=5).sam


def prompts(sam, n_prompts=1, clicks=2, with_mask=False):
    coords = torch.tensor([[[100.0 + 300 * i, 200.0 + 100 * i] for i in range(clicks)]] * n_prompts)
    labels = torch.tensor([[1] + [0] * (clicks - 1)] * n_prompts)
    masks = torch.randn(n_prompts, 1, 256, 256) if with_mask else None
    return sam.prompt_encoder(points=(coords, labels), boxes=None, masks=masks)


@torch.no_grad()
def test_a_fresh_decoder_gives_sams_exact_outputs(sam):
    decoder = EnhancedMaskDecoder.from_sam(sam.mask_decoder).eval()
    embedding = torch.randn(1, 256, 64, 64)
    pe = sam.prompt_encoder.get_dense_pe()
    for n_prompts, with_mask, multimasks in ((1, False, (False, True)), (2, True, (True,))):
        sparse, dense = prompts(sam, n_prompts, with_mask=with_mask)
        for multimask in multimasks:
            ours = decoder(embedding, pe, sparse, dense, multimask)
            theirs = sam.mask_decoder(embedding, pe, sparse, dense, multimask)
            assert ours[0].shape == (n_prompts, 3 if multimask else 1, 256, 256)
            assert torch.equal(ours[0], theirs[0]) and torch.equal(ours[1], theirs[1])


def test_keeps_every_sam_tensor_under_its_name_and_adds_capacity(sam):
    decoder = EnhancedMaskDecoder.from_sam(sam.mask_decoder)
    ours, theirs = decoder.state_dict(), sam.mask_decoder.state_dict()
    assert all(torch.equal(ours[k], theirs[k]) for k in theirs)
    assert {k for k in ours if k not in theirs} == {
        k for k in ours if k.startswith(("global_attention.", "refinement."))
    }
    assert decoder.transformer.layers[0].mlp.lin1.weight is not sam.mask_decoder.transformer.layers[0].mlp.lin1.weight
    count = lambda module: sum(p.numel() for p in module.parameters())  # noqa: E731
    assert count(decoder) > count(sam.mask_decoder) + 250_000  # full-width attention + refinement


def test_training_moves_the_additions_away_from_zero(sam):
    decoder = EnhancedMaskDecoder.from_sam(sam.mask_decoder)
    optimizer = torch.optim.SGD(decoder.parameters(), lr=0.1)
    sparse, dense = prompts(sam)
    masks, _ = decoder(torch.randn(1, 256, 64, 64), sam.prompt_encoder.get_dense_pe(), sparse, dense, False)
    target = torch.zeros_like(masks)
    target[..., 64:192, 64:192] = 1
    torch.nn.functional.binary_cross_entropy_with_logits(masks, target).backward()
    optimizer.step()
    assert decoder.global_attention.out_proj.weight.abs().sum() > 0
    assert decoder.refinement[-1].weight.abs().sum() > 0


@pytest.mark.parametrize(
    "config",
    [EnhancedDecoderConfig(norm="group", activation="relu", kv_pool=2, attention_dim=32, heads=2),
     EnhancedDecoderConfig(width=8, norm="none", heads=4)],
)
@torch.no_grad()
def test_configurable_shapes(sam, config):
    decoder = EnhancedMaskDecoder.from_sam(sam.mask_decoder, config)
    masks, iou = decoder(torch.randn(1, 256, 64, 64), sam.prompt_encoder.get_dense_pe(), *prompts(sam), True)
    assert masks.shape == (1, 3, 256, 256) and iou.shape == (1, 3)
    up1 = decoder.refinement[3]
    assert up1[0].out_channels == config.width and up1[3].out_channels == config.width // 2


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"width": 7}, "width must be an even number"),
        ({"heads": 3}, "heads .3. must divide attention_dim .256."),
        ({"norm": "batch"}, "norm must be one of layer, group, none"),
        ({"activation": "tanh"}, "activation must be one of gelu, relu, silu"),
        ({"kv_pool": 0}, "kv_pool must be >= 1"),
    ],
)
def test_config_errors_name_the_allowed_values(kwargs, message):
    with pytest.raises(ValueError, match=message):
        EnhancedDecoderConfig(**kwargs)


def test_drops_into_click_session():
    model = load_model("vit_tiny", device="cpu", seed=5)
    light = EnhancedDecoderConfig(width=8, heads=2, attention_dim=32, kv_pool=2)  # fast on CPUs
    model.sam.mask_decoder = EnhancedMaskDecoder.from_sam(model.sam.mask_decoder, light).eval()
    image = make_tile(seed=2, size=160)[0][:, :120]
    session = ClickSession(model, image)  # multimask="first": SAM's three candidates, best kept
    first = session.click(30, 50)
    assert first.mask.shape == first.logits.shape == (160, 120)
    assert first.low_res_logits.shape == (1, 256, 256)
    np.testing.assert_array_equal(first.mask, first.logits > 0)
    second = session.click(90, 120, positive=False)
    # The previous low-resolution logits are fed back as the mask prompt.
    decoded = model.decode(
        session.embedding, np.array([[30, 50], [90, 120]], np.float32), np.array([1, 0]),
        mask_input=first.low_res_logits,
    )
    np.testing.assert_array_equal(second.logits, decoded.logits[0])
    assert second.predicted_iou == pytest.approx(float(decoded.predicted_iou[0]))
