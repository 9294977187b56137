"""The engine: model loading, batching, scoring and the training loop shared by every method.

It never imports a method and never branches on a method's name.
"""

from .model import DEFAULT_MODEL, LoadedModel, ModelKind, load_model
from .scoring import EvalResult, Scorer

__all__ = ["DEFAULT_MODEL", "EvalResult", "LoadedModel", "ModelKind", "Scorer", "load_model"]
