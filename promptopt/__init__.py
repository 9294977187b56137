"""promptopt: specialise a frozen language model to a task by optimising only its prompt."""

from promptopt.hookspecs import hookimpl
from promptopt.data.prompt import Prompt, Segment, SegmentKind, parse_template

__version__ = "0.1.0"

__all__ = ["Prompt", "Segment", "SegmentKind", "__version__", "evaluate_prompt", "hookimpl", "parse_template", "run"]


def __getattr__(name):  # the API imports torch; keep `import promptopt` light for plugin authors
    if name in ("run", "evaluate_prompt", "RunOptions"):
        from promptopt.pipeline import runner as api

        return getattr(api, name)
    raise AttributeError(name)
