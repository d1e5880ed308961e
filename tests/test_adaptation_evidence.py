"""Online adaptation must not degrade a base on a domain it already knows (issue 12's control).

The improving case (a domain the base has not seen) is ``test_adaptation.py``'s
``test_adaptation_improves_noc_on_a_domain_the_base_has_not_seen``; this is its control on the
same controlled domain (embeddings whose first 64 channels say where the object is): a base
whose decoder was trained on the domain already segments it, and adapting it on further masks
of that domain, in order, a refit after each accept as the evaluation protocol does, must leave
later samples no worse, whether the refits are adopted or the guard rail keeps the decoder.
Real vit_tiny decoder, random encoder weights (the embeddings are made directly, no encoder runs).
"""

from __future__ import annotations

import pytest
from test_adaptation import config, domain_sample

from histoclick import load_model
from histoclick.adaptation import Adapter, replay_score

CLICKS = 2  # simulated clicks per scored sample


@pytest.fixture(scope="module")
def domain_base():
    """vit_tiny whose decoder was trained on the domain (as fine-tuning on domain A makes a
    base), published by a refit on three of its samples."""
    trainer = Adapter(load_model("vit_tiny", device="cpu", seed=0), config(steps=8), background=False)
    for seed in range(3):
        embedding, mask = domain_sample(seed)
        trainer.accept(f"a-{seed}", mask, embedding=embedding)
    assert trainer.refit_now().adopted
    return trainer.model


@pytest.mark.slow
def test_adaptation_does_not_degrade_a_base_that_knows_the_domain(domain_base):
    later = [(*domain_sample(seed), None) for seed in (100, 101)]  # never trained on
    static = replay_score(domain_base, later, clicks=CLICKS)
    assert static.miou > 0.35  # the control holds: the base segments the domain (random: ~0.15)
    adapter = Adapter(domain_base, config(steps=3, replay_every=3), background=False)
    for seed in (20, 21, 22):  # new samples of the same domain, annotated in order
        embedding, mask = domain_sample(seed)
        adapter.accept(f"b-{seed}", mask, embedding=embedding)
        adapter.refit_now()
    assert adapter.status.refits == 3 and adapter.status.error is None
    adapted = replay_score(adapter.model, later, clicks=CLICKS)
    assert adapted.noc85 <= static.noc85 and adapted.miou >= static.miou - 0.01, (static, adapted)
