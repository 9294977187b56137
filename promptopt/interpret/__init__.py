"""Interpretation of trained prompts: what a soft prompt's vectors are near, what the model reads there, which of
them carry the accuracy, and how much a readable version keeps.

``inspection`` (the record ``promptopt inspect`` writes and its orchestration), ``ablation`` (per-vector ablation),
``lens`` (logit lens at the soft positions), ``distill`` (readable prompt by word-token search; self-description
probe), ``wayward`` (waywardness check). Deep prompts (per-layer prefixes) do not exist in promptopt yet, so there is
no per-layer ablation.

May import: ``promptopt.data``, ``promptopt.engine``, the run pipeline. Never a plugin, a suite or a report.
"""
