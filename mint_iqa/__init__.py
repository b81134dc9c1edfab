"""mint-iqa: explainable, multi-perspective quality assessment for AI-generated images.

    import mint_iqa
    m = mint_iqa.load("models:/mint-iqa@champion")   # or a model folder
    m.score(["a.png", "b.png"], "a corgi on a beach")   # images first, then the prompt

See `mint_iqa.inference.api` for the whole API. Heavy modules are imported on first use.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
__all__ = ["load", "Model", "Scorer", "Assessor"]

_LAZY = {
    "load": "mint_iqa.inference.api",
    "Model": "mint_iqa.inference.api",
    "Scorer": "mint_iqa.inference.scoring",
    "Assessor": "mint_iqa.inference.assess",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'mint_iqa' has no attribute {name!r}")
