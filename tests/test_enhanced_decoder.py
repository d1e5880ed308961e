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
def test_outputs_one_low_res_mask_and_iou_per_prompt(sam):
    decoder = EnhancedMaskDecoder.from_sam(sam.mask_decoder)
    embedding = torch.randn(1, 256, 64, 64)
    pe = sam.prompt_encoder.get_dense_pe()
    for n_prompts, multimask in ((1, False), (1, True), (3, True)):
        sparse, dense = prompts(sam, n_prompts, with_mask=n_prompts > 1)
        masks, iou = decoder(embedding, pe, sparse, dense, multimask)
        assert masks.shape == (n_prompts, 1, 256, 256) and iou.shape == (n_prompts, 1)
        assert torch.isfinite(masks).all() and torch.isfinite(iou).all()
    # One embedding shared by several prompts gives what each prompt gets alone.
    sparse, dense = prompts(sam, 3, with_mask=True)
    together, _ = decoder(embedding, pe, sparse, dense, False)
    alone, _ = decoder(embedding, pe, sparse[1:2], dense[1:2], False)
    torch.testing.assert_close(together[1:2], alone, rtol=1e-4, atol=1e-4)


def test_starts_from_sams_transformer_tokens_and_iou_head(sam):
    decoder = EnhancedMaskDecoder.from_sam(sam.mask_decoder)
    ours, theirs = decoder.transformer.state_dict(), sam.mask_decoder.transformer.state_dict()
    assert ours.keys() == theirs.keys()
    assert all(torch.equal(ours[k], theirs[k]) for k in ours)
    assert decoder.transformer.layers[0].mlp.lin1.weight is not sam.mask_decoder.transformer.layers[0].mlp.lin1.weight
    assert torch.equal(decoder.iou_token.weight, sam.mask_decoder.iou_token.weight)
    assert torch.equal(decoder.mask_token.weight, sam.mask_decoder.mask_tokens.weight[:1])
    head, sam_head = decoder.iou_prediction_head.layers, sam.mask_decoder.iou_prediction_head.layers
    assert torch.equal(head[0].weight, sam_head[0].weight)
    assert torch.equal(head[-1].weight, sam_head[-1].weight[:1])


@pytest.mark.parametrize(
    "config",
    [EnhancedDecoderConfig(norm="group", activation="relu", kv_pool=1), EnhancedDecoderConfig(width=8, norm="none", heads=4)],
)
@torch.no_grad()
def test_configurable_shapes(sam, config):
    decoder = EnhancedMaskDecoder.from_sam(sam.mask_decoder, config)
    masks, iou = decoder(torch.randn(1, 256, 64, 64), sam.prompt_encoder.get_dense_pe(), *prompts(sam), False)
    assert masks.shape == (1, 1, 256, 256) and iou.shape == (1, 1)
    assert decoder.up1[0].out_channels == config.width and decoder.up1[3].out_channels == config.width // 2


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"width": 7}, "width must be an even number"),
        ({"heads": 3}, "heads .3. must divide attention_dim .32."),
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
    model.sam.mask_decoder = EnhancedMaskDecoder.from_sam(model.sam.mask_decoder).eval()
    image = make_tile(seed=2, size=160)[0][:, :120]
    session = ClickSession(model, image)  # multimask="first": the decoder gives one mask anyway
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
