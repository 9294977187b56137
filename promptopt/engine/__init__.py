"""The engine: model loading (``model``), inputs and batching (``inputs``), scoring (``scoring``), metrics, the
training loop shared by every method (``train``), compute accounting (``compute``), generation and data parallelism
(``distributed``).

May import: ``promptopt.data``, ``promptopt.errors``, torch, transformers, accelerate. Never imports the run
pipeline, a suite, a report or a plugin, and never branches on a method's name (``tests/test_imports.py``,
``tests/test_engine.py``).
"""

from .model import DEFAULT_MODEL, LoadedModel, ModelKind, load_model
from .scoring import EvalResult, Scorer, attention_implementation

__all__ = ["DEFAULT_MODEL", "EvalResult", "LoadedModel", "ModelKind", "Scorer", "attention_implementation", "load_model"]
