"""The run pipeline: ``run()`` (resolve options, prepare data by role, call the method, score the result, write the
run directory), the method base class and its ``RunContext``, config building from dataclasses, typed results and
the label-word search the pipeline offers to every method.

May import: ``promptopt.data``, ``promptopt.engine``, ``promptopt.plugins``/``hookspecs``/``errors``.
Never imports a plugin, a suite or a report.
"""
