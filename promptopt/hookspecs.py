"""The plugin contract. Every method, built-in or third-party, is a plugin implementing some of these hooks.

Implement a hook with ``@promptopt.hookimpl`` in a module named by an entry point in the ``promptopt`` group::

    [project.entry-points.promptopt]
    my_method = "my_package.my_module"

An implementation may accept fewer arguments than its spec. Arguments are only ever added to these specs.
"""

from __future__ import annotations

import pluggy

hookspec = pluggy.HookspecMarker("promptopt")
hookimpl = pluggy.HookimplMarker("promptopt")


@hookspec
def register_optimizers(register):
    """Called once when the plugin manager is first used.

    Call ``register(OptimizerClass)`` for each prompt optimizer (method) the plugin provides. The class must
    subclass :class:`promptopt.pipeline.methods.PromptOptimizer` and set a unique lowercase ``name`` (the ``--method`` id);
    registering a name twice raises an error naming both plugins. Returns nothing.
    """


@hookspec
def register_tasks(register):
    """Called once when tasks are first looked up.

    Call ``register(path)`` with the path of a task-spec file (TOML or JSON, see the README), or
    ``register(spec)`` with a :class:`promptopt.data.tasks.TaskSpec`, for each task the plugin provides. The task's
    ``name`` is how ``--task`` finds it; registering a name twice raises an error. Returns nothing.
    """


@hookspec
def register_commands(cli):
    """Called once when the command-line interface is built.

    ``cli`` is the top-level :class:`click.Group`; add commands with ``@cli.command()``. Returns nothing.
    """


@hookspec
def run_start(run):
    """Called after the model, task and data are loaded and before the optimizer starts.

    ``run`` is the :class:`promptopt.pipeline.methods.RunContext` (method, task, model, config, output directory).
    For logging plugins; return value ignored.
    """


@hookspec
def training_step(run, step, loss, lr):
    """Called after every optimizer step of the shared training loop (and every search iteration).

    ``step`` counts from 1, ``loss`` is the float training loss of that step, ``lr`` the learning rate used
    (``None`` for methods without one). Return value ignored.
    """


@hookspec
def evaluation(run, step, split, metrics):
    """Called each time a prompt is evaluated during or after optimisation.

    ``split`` is the split name (``"select"`` for selection during training, or ``"dev"``/``"test"``), ``step`` the
    training step (``None`` after training), ``metrics`` a dict of metric name -> float. Return value ignored.
    """


@hookspec
def run_end(run, result):
    """Called once when a run finishes, after its results are written.

    ``result`` is the :class:`promptopt.pipeline.results.RunResult`; on failure its ``status`` is ``"failed"`` and ``error``
    holds the message. Return value ignored.
    """
