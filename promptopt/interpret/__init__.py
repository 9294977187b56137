"""Interpretation of trained prompts: what a soft prompt's vectors are near, what the model reads there, and how
much accuracy a readable version keeps.

May import: ``promptopt.data``, ``promptopt.engine``, the run pipeline. Never a plugin, a suite or a report.
"""
