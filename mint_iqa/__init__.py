"""mint-iqa: explainable, multi-perspective quality assessment for AI-generated images."""

__version__ = "0.1.0"
