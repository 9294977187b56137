"""The plugin SDK: everything a method (built-in or third-party) may use. Plugins import this module and
``promptopt.hookimpl``, nothing else of promptopt and never another plugin.

Prompts and templates, soft-vector initialisers and template rules, the shared training loop, the scorer, the
method base classes, several-task helpers, the run pipeline's pieces (:class:`RunSession`: the run directory's
lifecycle, the same for one task and several; :func:`label_search_step`), errors and atomic writes::

    from promptopt import hookimpl
    from promptopt.sdk import OptimizeResult, PromptOptimizer, RunContext, SoftPromptConfig, train_soft_prompt
"""

from promptopt.data.files import append_jsonl, atomic_path, read_json, write_json, write_jsonl, write_text
from promptopt.data.history import Evaluation, SearchIteration, TrainStep, read_history
from promptopt.data.state import ResumableState, first_difference
from promptopt.data.prompt import Prompt, Segment, SegmentKind, decode_escapes, parse_template
from promptopt.data.tasks import Example, TaskKind, TaskSpec
from promptopt.engine.adapt import ModelEdit, model_kv, prefix_shape, swapped_parameters
from promptopt.engine.generate import Generation, generate
from promptopt.engine.model import LoadedModel, load_model
from promptopt.engine.scoring import EvalResult, Scorer
from promptopt.engine.train import BatchStream, FitResult, PromptVectors, TrainConfig, fit
from promptopt.errors import ConfigError, DataError, PromptoptError, TemplateError, enum_value
from promptopt.hookspecs import hookimpl
from promptopt.pipeline import config
from promptopt.pipeline.adapters import adapter_template, train_adapter
from promptopt.pipeline.methods import MethodKind, NoConfig, OptimizeResult, PromptOptimizer, RunContext
from promptopt.pipeline.results import RunResult, environment, peak_memory_mb, prepare_output
from promptopt.pipeline.session import RunSession
from promptopt.pipeline.taskset import (
    TaskData,
    TaskSetOptions,
    hard_template,
    load_lm,
    load_taskset,
    options_from_cli,
    resolved_config,
    soft_in_front,
    task_dir_name,
    taskset_context,
    taskset_fingerprint,
    taskset_options,
    taskset_result,
    tell_evaluation,
    write_task_run,
)
from promptopt.pipeline.vectors import (
    SoftPromptConfig,
    SoftPromptInit,
    TemplateRule,
    build_template,
    check_common,
    frequent_token_ids,
    has_soft,
    initial_rows,
    initial_values,
    soft_templates,
    train_soft_prompt,
    train_templates,
    transfer_values,
)
from promptopt.pipeline.verbalizer import (
    allowed_tokens,
    check_label_search,
    fit_examples,
    keep_better,
    label_search_step,
    search_label_words,
)
from promptopt.plugins import get_plugin_manager, get_task
from promptopt.report.continual import render_continual

__all__ = [
    "ModelEdit", "adapter_template", "train_adapter", "model_kv", "prefix_shape", "swapped_parameters",
    "RunSession", "check_label_search", "label_search_step", "taskset_context", "taskset_fingerprint",
    "taskset_result", "tell_evaluation",
    "Evaluation", "ResumableState", "SearchIteration", "TrainStep", "append_jsonl", "first_difference", "read_history",
    "BatchStream", "ConfigError", "Generation", "generate", "DataError", "EvalResult", "Example", "FitResult", "LoadedModel", "NoConfig",
    "MethodKind", "OptimizeResult", "Prompt", "PromptOptimizer", "PromptVectors", "PromptoptError", "RunContext",
    "RunResult",
    "Scorer", "Segment", "SegmentKind", "SoftPromptConfig", "SoftPromptInit", "TaskData", "TaskKind",
    "TaskSetOptions", "TaskSpec", "TemplateError", "TemplateRule", "TrainConfig", "allowed_tokens", "atomic_path",
    "build_template", "check_common", "config", "decode_escapes", "enum_value", "environment", "fit",
    "fit_examples", "frequent_token_ids", "get_plugin_manager", "get_task", "hard_template", "has_soft",
    "hookimpl", "initial_rows", "initial_values", "keep_better", "load_lm", "load_model", "load_taskset",
    "options_from_cli", "parse_template", "peak_memory_mb", "prepare_output", "read_json", "render_continual", "resolved_config",
    "search_label_words", "soft_in_front", "soft_templates", "task_dir_name", "taskset_options", "train_soft_prompt",
    "train_templates", "transfer_values", "write_json", "write_jsonl", "write_task_run", "write_text",
]  # fmt: skip
