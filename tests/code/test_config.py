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
    from mint_iqa.data.degradations import AUTHENTICITY, QUALITY

    assert set(params.prepare.quality) == set(QUALITY) and len(QUALITY) >= 25
    assert set(params.prepare.authenticity) == set(AUTHENTICITY) and len(AUTHENTICITY) >= 10
    assert params.model.preset == "lite0"


TABLES = {"prepare.quality", "prepare.authenticity", "prepare.labels.damage_scale"}  # only in params.yaml


def test_code_defaults_are_the_project_recipe() -> None:
    """Every value in params.yaml is also the code's default (the defect tables live only in the file), so
    a step run without a parameter, a test built from defaults and `dvc repro` run the same recipe."""
    import yaml

    from mint_iqa.config import Params

    defaults = Params().model_dump(mode="json", by_alias=True)
    differ = []

    def walk(code: object, project: object, path: str) -> None:
        if path.lstrip(".") in TABLES:
            assert code == {} and project, path
        elif isinstance(project, dict):
            for key, value in project.items():
                walk(
                    code.get(key, "<missing>") if isinstance(code, dict) else "<missing>",
                    value,
                    f"{path}.{key}",
                )
        elif code != project and not (isinstance(code, (int, float)) and code == pytest.approx(project)):
            differ.append(f"{path.lstrip('.')}: code {code!r}, params.yaml {project!r}")

    walk(defaults, yaml.safe_load((ROOT / "params.yaml").read_text()), "")
    assert not differ, differ


def test_a_missing_parameter_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no parameter file"):
        load_params(tmp_path / "params.yaml")


def test_overrides_apply_and_parse_yaml(tmp_path: Path) -> None:
    params = load_params(ROOT / "params.yaml", ["prepare.images_per_reference=7", "data.source=generic"])
    assert params.prepare.images_per_reference == 7 and params.data.source == "generic"


@pytest.mark.parametrize(
    "override",
    [
        "prepare.imagez_per_reference=3",
        "prepare.splits.strict.test_fold=9",
        "prepare.quality.noise.sigma=[0.1, 0.2]",
        "data.source=laion",
        "evaluate.device=gpu",
    ],
)
def test_bad_values_are_errors(override: str) -> None:
    with pytest.raises(ValidationError):
        load_params(ROOT / "params.yaml", [override])


def test_labels_fall_linearly_with_level() -> None:
    labels = LabelConfig(pristine=0.9, floor=0.1)
    values = [labels.for_level(level) for level in range(6)]
    assert values[0] == pytest.approx(0.9) and values[-1] == pytest.approx(0.1)
    assert all(a > b for a, b in zip(values, values[1:]))


def test_summed_severity_labels_fall_strictly_towards_the_floor() -> None:
    """Linear to 80 % of the way at severity 0.8, then a smooth approach: two defects that each do a lot
    still rank below one, and no two severities share a label."""
    labels = LabelConfig(pristine=0.9, floor=0.1)
    values = [labels.for_severity(s) for s in (0.0, 0.4, 0.8, 1.0, 1.5, 3.0)]
    assert (
        values[0] == pytest.approx(0.9)
        and values[1] == pytest.approx(0.58)
        and values[2] == pytest.approx(0.26)
    )
    assert all(a > b for a, b in zip(values, values[1:])) and values[-1] > 0.1
    assert LabelConfig(damage_scale={"noise": 0.5}).for_damage("noise", 0.25) == pytest.approx(0.5)
