"""The Python API, loaded once and used many times:

    import mint_iqa
    m = mint_iqa.load("models:/mint-iqa@champion")      # or a folder: artifacts/explainer/paper/best
    m.score("a corgi on a beach", ["a.png", "b.png"])   # DataFrame: quality, authenticity, correspondence
    m.rank("a corgi on a beach", images)                # best first
    m.explain("a.png", "a corgi on a beach")            # words
    m.assess(images, prompts)                           # scores + one explanation per dimension

Images may be paths, bytes, PIL images or numpy arrays (HxWx3 uint8, or float in [0, 1]). Scores are on
the calibrated 1-5 scale unless `scale="raw"` (see `mint_iqa.inference`). A bad image or prompt never
raises inside a batch: its row carries the reason in `status`.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from mint_iqa.assess import Assessor
from mint_iqa.config import DIMENSIONS
from mint_iqa.inference import Scorer, resolve_device
from mint_iqa.io import OK, ImageInput

DEFAULT_MODELS = ("artifacts/explainer/paper/best", "artifacts/scorer/paper/best")
RANK_KEYS = ("overall", *DIMENSIONS)


def _as_list(images: ImageInput | Sequence[ImageInput]) -> list[ImageInput]:
    if isinstance(images, (str, os.PathLike, bytes, np.ndarray)) or hasattr(images, "getpixel"):
        return [images]  # one image (a path, bytes, an array or a PIL image)
    return list(images)


def _dtype(dtype: str | torch.dtype) -> torch.dtype:
    if isinstance(dtype, torch.dtype):
        return dtype
    found = getattr(torch, str(dtype), None)
    if not isinstance(found, torch.dtype) or not found.is_floating_point:
        raise ValueError(f"dtype must be a floating torch dtype such as 'float32' or 'bfloat16', got {dtype!r}")
    return found


class Model:
    """A loaded mint-iqa model: the scorer, and the explainer when the source has one."""

    def __init__(self, scorer: Scorer, assessor: Assessor | None, source: str):
        self.scorer, self.assessor, self.source = scorer, assessor, source

    def __repr__(self) -> str:
        parts = "scorer + explainer" if self.assessor else "scorer"
        return f"mint_iqa.Model({self.source!r}, {parts}, device={self.scorer.device}, dtype={self.scorer.dtype})"

    def score(self, prompt: str | Sequence[str], images: ImageInput | Sequence[ImageInput], batch_size: int = 32,
              scale: str = "mos") -> pd.DataFrame:
        """One row per image, in order: quality, authenticity, correspondence, status."""
        items = _as_list(images)
        return self.scorer.score(items, prompt, batch_size=batch_size, show_progress=len(items) >= 64, scale=scale)

    def rank(self, prompt: str, images: ImageInput | Sequence[ImageInput], by: str = "overall",
             batch_size: int = 32) -> pd.DataFrame:
        """Best-of-N: the images sorted best first by `by` ("overall" = mean of the three scores);
        column `index` is the position in the input, failed images come last with rank NaN."""
        if by not in RANK_KEYS:
            raise ValueError(f"by must be one of {RANK_KEYS}, got {by!r}")
        table = self.score(prompt, images, batch_size=batch_size)
        table.insert(0, "index", range(len(table)))
        table["overall"] = table[list(DIMENSIONS)].mean(axis=1)
        ok = table["status"] == OK
        table = pd.concat([table[ok].sort_values(by, ascending=False, kind="stable"), table[~ok]])
        table.insert(0, "rank", [*range(1, int(ok.sum()) + 1), *[np.nan] * int((~ok).sum())])
        return table.reset_index(drop=True)

    def explain(self, image: ImageInput, prompt: str, question: str | None = None) -> str:
        """The answer to `question` (default: all three perspectives) in words."""
        return self._explainer().explain(image, prompt, question)

    def assess(self, images: ImageInput | Sequence[ImageInput], prompts: str | Sequence[str], batch_size: int = 16,
               scale: str = "mos") -> pd.DataFrame:
        """Scores and one explanation per dimension for each image."""
        return self._explainer().assess(_as_list(images), prompts, batch_size=batch_size, scale=scale)

    def _explainer(self) -> Assessor:
        if self.assessor is None:
            raise ValueError(f"{self.source}: this model has a scorer only; load an assessor folder "
                             "(scorer/ + explainer/) or a registered model to get explanations")
        return self.assessor


def _local_folder(source: str, workdir: str) -> Path:
    """A folder with the model files: `source` itself, or the assessor inside a downloaded MLflow model."""
    if "://" not in source and not source.startswith(("models:", "runs:")):
        return Path(source)
    import mlflow
    from mlflow.models import Model as MlflowModel

    from mint_iqa import tracking

    mlflow.set_tracking_uri(tracking.tracking_uri())
    local = Path(mlflow.artifacts.download_artifacts(artifact_uri=source, dst_path=workdir))
    artifacts = MlflowModel.load(str(local)).flavors.get("python_function", {}).get("artifacts", {})
    if "assessor" not in artifacts:
        raise ValueError(f"{source}: not a mint-iqa model (no 'assessor' artifact)")
    return local / artifacts["assessor"]["path"]


def load(source: str | os.PathLike | None = None, device: str = "cpu", dtype: str | torch.dtype = "float32",
         num_beams: int = 1) -> Model:
    """Load a model once: a folder (assessor `scorer/ + explainer/`, or a scorer alone) or an MLflow URI such
    as `models:/mint-iqa@champion`. Without `source`: $MINT_IQA_MODEL, else this project's trained model.
    `device="auto"`: the GPU when there is one, else the CPU."""
    source = str(source or os.environ.get("MINT_IQA_MODEL") or next(
        (p for p in DEFAULT_MODELS if Path(p).exists()), DEFAULT_MODELS[0]))
    torch_dtype, device = _dtype(dtype), resolve_device(device)
    with tempfile.TemporaryDirectory(prefix="mint-iqa-model-") as workdir:
        folder = _local_folder(source, workdir)
        if (folder / "explainer").is_dir():
            assessor = Assessor.load(folder, device=device, num_beams=num_beams, dtype=torch_dtype)
            return Model(assessor.scorer, assessor, source)
        if not folder.exists():
            raise FileNotFoundError(f"{source}: no such model folder (train one with `make demo`, or pass "
                                    "--model PATH or models:/mint-iqa@champion)")
        return Model(Scorer.load(folder, device=device, dtype=torch_dtype), None, source)
