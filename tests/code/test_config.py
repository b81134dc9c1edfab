"""Typed parameters: the project file loads, typos and malformed ladders are errors."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from mint_iqa.config import LabelConfig, load_params

ROOT = Path(__file__).resolve().parents[2]


def test_project_params_load() -> None:
    params = load_params(ROOT / "params.yaml")
    assert params.data.source == "proxy"
    assert set(params.prepare.quality) == {"gaussian_blur", "motion_blur", "noise", "jpeg", "exposure"}
    assert set(params.prepare.authenticity) == {"elastic_warp", "duplicated_patch", "smear",
                                                "implausible_colour", "grid"}


def test_overrides_apply_and_parse_yaml(tmp_path: Path) -> None:
    params = load_params(ROOT / "params.yaml", ["prepare.images_per_reference=7", "data.source=generic"])
    assert params.prepare.images_per_reference == 7 and params.data.source == "generic"


@pytest.mark.parametrize("override", ["prepare.imagez_per_reference=3", "prepare.splits.strict.test_fold=9",
                                      "prepare.quality.noise.sigma=[0.1, 0.2]", "data.source=laion",
                                      "evaluate.device=gpu"])
def test_bad_values_are_errors(override: str) -> None:
    with pytest.raises(ValidationError):
        load_params(ROOT / "params.yaml", [override])


def test_labels_fall_linearly_with_level() -> None:
    labels = LabelConfig(pristine=0.9, floor=0.1)
    values = [labels.for_level(level) for level in range(6)]
    assert values[0] == pytest.approx(0.9) and values[-1] == pytest.approx(0.1)
    assert all(a > b for a, b in zip(values, values[1:]))
