"""Prompts and tasks: the one Prompt type (template parsing, segments, saving), task specs and their data loaders,
and atomic file writing (``files``).

May import: the standard library, torch/safetensors/tokenizers for the Prompt's tensors, ``promptopt.errors``.
Never imports the engine, the run pipeline, suites, reports or any plugin.
"""
