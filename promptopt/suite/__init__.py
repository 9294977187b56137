"""Suites: many runs (methods x tasks x seeds) with one loaded model, resumable, gathered into a leaderboard that
``promptopt.report`` renders.

May import: the run pipeline, ``promptopt.data``, ``promptopt.interpret``, ``promptopt.report``. Never a plugin.
"""
