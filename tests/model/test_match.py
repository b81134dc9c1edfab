"""The image-prompt matching space (`train.loss.match`): its contrastive loss and its place in the scorer."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from mint_iqa.config import LossConfig
from mint_iqa.models.factory import build_scorer, build_tokenizer, load_scorer, preset_config, save_scorer
from mint_iqa.train.scorer import match_loss, scorer_loss
from tests.model.conftest import CORPUS, TINY

SCALE = torch.tensor([2.0])  # log of the logit scale: e^2 ~ 7


def _unit(rows: list[list[float]]) -> torch.Tensor:
    return F.normalize(torch.tensor(rows, dtype=torch.float32), dim=-1)


def test_match_loss_rewards_images_next_to_their_references_captions() -> None:
    groups = ["cat", "cat", "rocket", "moon"]
    matching = torch.tensor([True, True, True, True])
    aligned = _unit([[1, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]])
    swapped = aligned[[2, 3, 0, 1]]
    assert match_loss(aligned, aligned, SCALE, groups, matching) < match_loss(
        aligned, swapped, SCALE, groups, matching
    )
    # two crops of one reference are both right for each other's caption: no penalty for being alike
    assert match_loss(aligned, aligned, SCALE, groups, matching) < 0.01


def test_a_wrong_prompt_is_a_negative_for_its_own_image_only() -> None:
    groups = ["cat", "cat", "rocket"]
    img = _unit([[1, 0], [1, 0], [0, 1]])
    # row 1's prompt is a mismatch that happens to read like a rocket caption
    txt = _unit([[1, 0], [0, 1], [0, 1]])
    matching = torch.tensor([True, False, True])
    base = match_loss(img, txt, SCALE, groups, matching)
    # the same wrong prompt reading like a cat caption (close to its own image) costs more
    worse = match_loss(img, _unit([[1, 0], [1, 0], [0, 1]]), SCALE, groups, matching)
    assert base < worse
    # rows without a reference group take no part; a batch with none costs nothing
    assert match_loss(img, txt, SCALE, ["", "", ""], matching).item() == 0.0
    assert torch.isclose(
        match_loss(img, txt, SCALE, ["cat", "cat", ""], matching),
        match_loss(img[:2], txt[:2], SCALE, ["cat", "cat"], matching[:2]),
    )


def test_matching_space_starts_neutral_and_survives_a_round_trip(tmp_path: Path) -> None:
    torch.manual_seed(0)
    config = preset_config("tiny", TINY)
    tokenizer = build_tokenizer(config.text, corpus=CORPUS)
    plain, _ = build_scorer(config, tokenizer=tokenizer)
    config.match = True
    torch.manual_seed(0)
    model, tok = build_scorer(config, tokenizer=tokenizer)
    model.eval()
    plain.load_state_dict({k: v for k, v in model.state_dict().items() if not k.startswith("matcher.")})
    plain.eval()
    enc = tok(CORPUS[:3])
    images = torch.rand(3, 3, 64, 64)
    out = model(images, enc["input_ids"], enc["attention_mask"])
    assert out.image_embeds.shape == out.text_embeds.shape == (3, 128)
    assert torch.allclose(out.image_embeds.norm(dim=-1), torch.ones(3))
    # the similarity's weight starts at zero: the scores are those of the scorer without the space
    assert torch.equal(out.scores, plain(images, enc["input_ids"], enc["attention_mask"]).scores)
    with torch.no_grad():
        model.matcher.weight.fill_(1.0)
    moved = model(images, enc["input_ids"], enc["attention_mask"]).scores
    assert torch.equal(moved[:, :2], out.scores[:, :2]) and not torch.allclose(moved[:, 2], out.scores[:, 2])
    again, _ = load_scorer(save_scorer(model, tok, tmp_path / "scorer"))
    assert again.config.match
    assert torch.equal(again(images, enc["input_ids"], enc["attention_mask"]).scores, moved)


def test_a_space_apart_trains_none_of_the_scorers_own_parameters() -> None:
    """With the space apart, the scorer's parameters get the gradients they would get without it: the
    term learns on top of the scorer's score, and the contrastive loss reaches only the space."""
    torch.manual_seed(0)
    config = preset_config("tiny", TINY)
    tokenizer = build_tokenizer(config.text, corpus=CORPUS)
    plain, _ = build_scorer(config, tokenizer=tokenizer)
    config.match = config.match_apart = True
    model, tok = build_scorer(config, tokenizer=tokenizer)
    plain.load_state_dict({k: v for k, v in model.state_dict().items() if not k.startswith("matcher.")})
    with torch.no_grad():
        model.matcher.weight.fill_(0.5)  # the term moves the correspondence score
    enc = tok(CORPUS[:4])
    images = torch.rand(4, 3, 64, 64)
    batch = {
        "labels": torch.tensor([[0.9, 0.9, 0.9], [0.4, 0.9, 0.9], [0.9, 0.2, 0.9], [0.9, 0.9, 0.3]]),
        "groups": ["cat", "rocket", "cat", "rocket"],
        "matching": torch.tensor([True, True, True, False]),
    }
    weights = LossConfig(aux=0.0, locate=0.0, match=0.1)
    grads = {}
    for name, m in (("plain", plain), ("space", model)):
        out = m(images, enc["input_ids"], enc["attention_mask"])
        scale = m.matcher.logit_scale if m.matcher else None
        total, parts = scorer_loss(out, batch, weights, scale, m.config.match_apart)
        m.zero_grad()
        total.backward()
        grads[name] = {k: p.grad.clone() for k, p in m.named_parameters() if p.grad is not None}
    assert parts["match"] > 0  # the space itself learns, from both its losses
    assert model.matcher.weight.grad.abs() > 0 and model.matcher.text.weight.grad.abs().sum() > 0
    own = {k: g for k, g in grads["space"].items() if not k.startswith("matcher.")}
    assert own.keys() == grads["plain"].keys()
    for k, g in own.items():
        assert torch.allclose(g, grads["plain"][k], atol=1e-6), k
