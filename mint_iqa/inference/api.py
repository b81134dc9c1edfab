"""The Python API, loaded once and used many times; images always come first, then the prompt(s):

    import mint_iqa
    m = mint_iqa.load()                           # the default model, or a folder / models:/mint-iqa@champion
    m.score(["a.png", "b.png"], "a corgi on a beach") # DataFrame: quality, authenticity, correspondence
    m.rank(images, "a corgi on a beach")              # best first
    m.explain("a.png", "a corgi on a beach")          # words
    m.assess(images, prompts)                         # scores + one explanation per dimension
    m.score(images, prompt, maps=True)                # + where each image is damaged (quality_map, ...)
    m.score(images, prompt, words=True)               # + which prompt words the image shows (words)

Images may be paths, bytes, PIL images or numpy arrays (HxWx3 uint8, or float in [0, 1]). Scores are on
the calibrated 1-5 scale unless `scale="raw"` (see `mint_iqa.inference`). A bad image or prompt never
raises inside a batch: its row carries the reason in `status`. Arguments in the wrong order (a prompt
where an image belongs, or an image where the prompt belongs) raise at once, saying so.

The default model: `$MINT_IQA_MODEL`, else the per-user default that `mint-iqa use-model` (run by
`make demo`) records, else this project's trained model under the current folder.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from mint_iqa.config import BATCH_SIZE, DIMENSIONS
from mint_iqa.inference.scoring import Scorer, resolve_device
from mint_iqa.io import IMAGE_SUFFIXES, OK, ImageInput, write_text

DEFAULT_MODELS = ("artifacts/explainer/paper/best", "artifacts/scorer/paper/best")
RANK_KEYS = ("overall", *DIMENSIONS)
ORDER = "images come first, then the prompt: m.score(images, prompt)"


def _as_list(images: ImageInput | Sequence[ImageInput]) -> list[ImageInput]:
    if isinstance(images, (str, os.PathLike, bytes, np.ndarray)) or hasattr(images, "getpixel"):
        return [images]  # one image (a path, bytes, an array or a PIL image)
    return list(images)


def _looks_like_prompt(item: Any) -> bool:
    """A string that cannot be an image path we could read: no such file, no image suffix, words."""
    return (
        isinstance(item, str)
        and " " in item.strip()
        and not item.lower().endswith(IMAGE_SUFFIXES)
        and not os.path.exists(item)
    )


def _check_order(images: Any, prompts: Any) -> None:
    """Raise when the arguments are swapped: an image where the prompt belongs, or prompts as the images."""
    texts = list(prompts) if isinstance(prompts, (list, tuple)) else [prompts]
    bad = next((t for t in texts if not isinstance(t, str)), None)
    if bad is not None:
        raise TypeError(
            f"the prompt must be a string (or one string per image), got {type(bad).__name__}; {ORDER}"
        )
    for text in texts:
        if text.lower().endswith(IMAGE_SUFFIXES) and os.path.isfile(text):
            raise ValueError(f"the prompt {text!r} is an image file; {ORDER}")
    items = _as_list(images)
    if items and all(_looks_like_prompt(item) for item in items):
        raise ValueError(f"{str(items[0])[:60]!r} is not an image file but reads like a prompt; {ORDER}")


def _dtype(dtype: str | torch.dtype) -> torch.dtype:
    if isinstance(dtype, torch.dtype):
        return dtype
    found = getattr(torch, str(dtype), None)
    if not isinstance(found, torch.dtype) or not found.is_floating_point:
        raise ValueError(
            f"dtype must be a floating torch dtype such as 'float32' or 'bfloat16', got {dtype!r}"
        )
    return found


class Model:
    """A loaded mint-iqa model: the scorer, and the explainer when the source has one (read from its folder
    the first time an explanation is asked for, so scoring alone never pays for the language model)."""

    def __init__(
        self,
        scorer: Scorer,
        source: str,
        assessor: Any = None,
        explainer_folder: Path | None = None,
        num_beams: int = 1,
    ):
        self.scorer, self.source, self.num_beams = scorer, source, num_beams
        self._assessor, self._explainer_folder = assessor, explainer_folder

    @property
    def has_explainer(self) -> bool:
        return self._assessor is not None or self._explainer_folder is not None

    def __repr__(self) -> str:
        parts = "scorer + explainer" if self.has_explainer else "scorer"
        return (
            f"mint_iqa.Model({self.source!r}, {parts}, "
            f"device={self.scorer.device}, dtype={self.scorer.dtype})"
        )

    def score(
        self,
        images: ImageInput | Sequence[ImageInput],
        prompt: str | Sequence[str],
        batch_size: int = BATCH_SIZE,
        scale: str = "mos",
        maps: bool = False,
        words: bool = False,
    ) -> pd.DataFrame:
        """One row per image, in order: quality, authenticity, correspondence, status; with `maps`, also
        `quality_map` and `authenticity_map` (per cell of the image, how visibly it is damaged, in [0, 1];
        `mint_iqa.maps.overlay` draws them); with `words`, `words`: (word, support in [0, 1]) for each word
        of the prompt that names something an ImageNet classifier knows."""
        _check_order(images, prompt)
        _check_batch_size(batch_size)
        items = _as_list(images)
        show = len(items) >= 64
        return self.scorer.score(
            items, prompt, batch_size=batch_size, show_progress=show, scale=scale, maps=maps, words=words
        )

    def rank(
        self,
        images: ImageInput | Sequence[ImageInput],
        prompt: str,
        by: str = "overall",
        batch_size: int = BATCH_SIZE,
    ) -> pd.DataFrame:
        """Best-of-N: the images sorted best first by `by` ("overall" = mean of the three scores);
        column `index` is the position in the input, failed images come last with rank NaN."""
        if by not in RANK_KEYS:
            raise ValueError(f"by must be one of {RANK_KEYS}, got {by!r}")
        table = self.score(images, prompt, batch_size=batch_size)
        table.insert(0, "index", range(len(table)))
        table["overall"] = table[list(DIMENSIONS)].mean(axis=1)
        ok = table["status"] == OK
        table = pd.concat([table[ok].sort_values(by, ascending=False, kind="stable"), table[~ok]])
        table.insert(0, "rank", [*range(1, int(ok.sum()) + 1), *[np.nan] * int((~ok).sum())])
        return table.reset_index(drop=True)

    def explain(self, image: ImageInput, prompt: str, question: str | None = None) -> str:
        """The answer to `question` (default: all three perspectives) in words."""
        _check_order(image, prompt)
        return self._explainer().explain(image, prompt, question)

    def assess(
        self,
        images: ImageInput | Sequence[ImageInput],
        prompts: str | Sequence[str],
        batch_size: int = 16,
        scale: str = "mos",
        maps: bool = False,
        words: bool = False,
    ) -> pd.DataFrame:
        """Scores and one explanation per dimension for each image; `maps` and `words` as in `score`."""
        _check_order(images, prompts)
        _check_batch_size(batch_size)
        return self._explainer().assess(
            _as_list(images), prompts, batch_size=batch_size, scale=scale, maps=maps, words=words
        )

    def _explainer(self) -> Any:
        if self._assessor is None:
            if self._explainer_folder is None:
                raise ValueError(
                    f"{self.source}: this model has a scorer only; load an assessor folder "
                    "(scorer/ + explainer/) or a registered model to get explanations"
                )
            from mint_iqa.inference.assess import Assessor

            self._assessor = Assessor.load(
                self._explainer_folder, num_beams=self.num_beams, scorer=self.scorer
            )
        return self._assessor


def _check_batch_size(batch_size: Any) -> None:
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"batch_size must be a whole number >= 1, got {batch_size!r}")


def user_default_file() -> Path:
    """Where `mint-iqa use-model` records the per-user default model ($XDG_CONFIG_HOME/mint-iqa/model)."""
    return Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config") / "mint-iqa" / "model"


def set_default_model(source: str | os.PathLike) -> str:
    """Record `source` (a model folder, stored as an absolute path, or an MLflow URI) as this user's
    default."""
    source = str(source)
    if not _is_uri(source):
        folder = Path(source).resolve()
        if not (folder / "config.json").is_file() and not (folder / "scorer").is_dir():
            raise FileNotFoundError(f"{source}: not a model folder (no config.json or scorer/ inside)")
        source = str(folder)
    write_text(user_default_file(), source + "\n")
    return source


def default_model() -> str:
    """The model `load()` uses without a source; raises naming every place it looked."""
    looked = []
    env = os.environ.get("MINT_IQA_MODEL")
    if env:
        return env
    looked.append("$MINT_IQA_MODEL (unset)")
    pointer = user_default_file()
    if pointer.is_file():
        recorded = pointer.read_text(encoding="utf-8").strip()
        if recorded and (_is_uri(recorded) or Path(recorded).exists()):
            return recorded
        looked.append(f"{pointer} (names {recorded!r}, which does not exist)")
    else:
        looked.append(f"{pointer} (absent)")
    for candidate in DEFAULT_MODELS:
        if Path(candidate).exists():
            return candidate
        looked.append(f"{Path(candidate).absolute()} (absent)")
    raise FileNotFoundError(
        f"no model found; looked at {', '.join(looked)}. Build one with `make demo` "
        "(it records itself with `mint-iqa use-model`), or pass --model PATH or "
        "models:/mint-iqa@champion"
    )


def _is_uri(source: str) -> bool:
    return "://" in source or source.startswith(("models:", "runs:"))


def _local_folder(source: str, workdir: str) -> Path:
    """A folder with the model files: `source` itself, or the assessor inside a downloaded MLflow model."""
    if not _is_uri(source):
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


def load(
    source: str | os.PathLike | None = None,
    device: str = "cpu",
    dtype: str | torch.dtype = "float32",
    num_beams: int = 1,
) -> Model:
    """Load a model once: a folder (assessor `scorer/ + explainer/`, or a scorer alone) or an MLflow URI such
    as `models:/mint-iqa@champion`. Without `source`: `default_model()`. `device="auto"`: the GPU when
    there is one, else the CPU."""
    source = str(source or default_model())
    torch_dtype, device = _dtype(dtype), resolve_device(device)
    if not _is_uri(source):  # a local folder: the explainer is read when first needed
        folder = Path(source)
        if not folder.exists():
            raise FileNotFoundError(
                f"{source}: no such model folder (build one with `make demo`, or pass "
                "--model PATH or models:/mint-iqa@champion)"
            )
        if (folder / "explainer").is_dir():
            scorer = Scorer.load(folder / "scorer", device=device, dtype=torch_dtype)
            return Model(scorer, source, explainer_folder=folder, num_beams=num_beams)
        return Model(Scorer.load(folder, device=device, dtype=torch_dtype), source)
    from mint_iqa.inference.assess import Assessor

    with tempfile.TemporaryDirectory(prefix="mint-iqa-model-") as workdir:
        folder = _local_folder(source, workdir)
        if not (folder / "explainer").is_dir():
            return Model(Scorer.load(folder, device=device, dtype=torch_dtype), source)
        assessor = Assessor.load(folder, device=device, num_beams=num_beams, dtype=torch_dtype)
        return Model(assessor.scorer, source, assessor=assessor, num_beams=num_beams)
