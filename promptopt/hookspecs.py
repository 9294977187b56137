"""The plugin contract. Every method, built-in or third-party, is a plugin implementing some of these hooks.

Implement a hook with ``@promptopt.hookimpl`` in a module named by an entry point in the ``promptopt`` group::

    [project.entry-points.promptopt]
    my_method = "my_package.my_module"

An implementation may accept fewer arguments than its spec; arguments are only ever added to these specs. A
misspelled implementation (a ``@hookimpl`` function named like no spec) fails when the plugin manager is built.

Two kinds of hook:

* **registration** hooks (``register_optimizers``, ``register_tasks``, ``register_commands``) are called once, when
  the plugin manager is first used for that purpose; an exception there is a broken plugin and stops the command,
  with the plugin's name in the message.
* **logging** hooks (``run_start``, ``training_step``, ``evaluation``, ``run_end``) observe a run. Their return
  values are ignored. An exception in one is logged as a warning naming the plugin and the hook, and the run goes on
  (a tracker that fails must not kill a training run), unless the plugin sets ``promptopt_strict_hooks = True``
  (module or object attribute): then the exception propagates and the run fails with ``error.json``.

Implementations of one hook run in pluggy's order: last registered first, ``tryfirst``/``trylast`` respected.
Built-in plugins are registered in entry-point order, then ``extra_plugins``.
"""

from __future__ import annotations

import pluggy

hookspec = pluggy.HookspecMarker("promptopt")
hookimpl = pluggy.HookimplMarker("promptopt")


@hookspec
def register_optimizers(register):
    """Called once, when methods are first looked up (``promptopt methods``, ``promptopt run``, a suite).

    Call ``register(OptimizerClass)`` for each prompt optimizer (method) the plugin provides. The class must subclass
    :class:`promptopt.sdk.PromptOptimizer` and set a unique lowercase ``name`` (the ``--method`` id); a class
    without a name, or a name registered twice, raises an error naming both plugins. Returns nothing. Raising stops
    the command (a broken plugin).
    """


@hookspec
def register_tasks(register):
    """Called once, when tasks are first looked up (``--task NAME``, ``promptopt tasks``).

    Call ``register(path)`` with the path of a task-spec file (TOML or JSON, see the README), or ``register(spec)``
    with a :class:`promptopt.sdk.TaskSpec`, for each task the plugin provides. The task's ``name`` is how ``--task``
    finds it; a name registered twice raises an error naming both files. Returns nothing. Raising stops the command.
    """


@hookspec
def register_commands(cli):
    """Called once, when the command-line interface is built (every ``promptopt`` command).

    ``cli`` is the top-level :class:`click.Group`; add commands with ``@cli.command()``. Returns nothing. Raising
    stops the command-line interface from starting.
    """


@hookspec
def run_start(run):
    """Called once per run, after the model, task, data and ``config.json`` are ready and before the method starts.

    ``run`` is the :class:`promptopt.sdk.RunContext`: ``run.method``, ``run.task``, ``run.lm``, ``run.config`` (the
    method's options), ``run.train_config``, ``run.options`` (the whole resolved ``config.json``, fingerprint
    included) and ``run.output_dir``. Logging hook: return value ignored; an exception is reported and the run goes
    on (see the module docstring).

    Runs over several tasks (``promptopt multitask``, ``promptopt continual``) call it once too: ``run.task`` is then
    the first task and ``run.tasks`` lists every task in order (:class:`promptopt.sdk.TaskData`: spec, scorer,
    train and select examples, template); for a one-task run ``run.tasks`` is empty. ``run.method`` is
    ``"multitask"`` or ``"continual"`` and ``run.options`` their ``config.json``.
    """


@hookspec
def training_step(run, step, loss, lr):
    """Called after every optimizer step of the shared training loop, and after every iteration of a search
    (AutoPrompt), in step order.

    ``step`` counts from 1 (a resumed run continues the count), ``loss`` is the float training loss of that step (for
    a search: the loss its gradient was taken on), ``lr`` the learning rate used (``None`` for a search).
    ``run.compute.flops`` is what the run has spent so far. Logging hook: return value ignored; an exception is
    reported and the run goes on.
    """


@hookspec
def evaluation(run, step, split, metrics):
    """Called each time the engine scores a prompt for the run: on the selection split during optimisation
    (``split="select"``, ``step`` the training step or search iteration, or the template index for ``manual``), and
    once at the end on the reported split (``split="eval"``, ``step=None``), after the method has returned. A run over
    several tasks reports each task's final evaluation as ``split="eval/TASK"`` (``step=None``); its selection
    scores are ``split="select"`` (multitask: the mean over the tasks, with ``score/TASK`` per task; continual: the
    current stage's task, the step counting from 1 again at each stage).

    ``metrics`` is a dict of metric name -> float (``score`` is the task's main metric). Logging hook: return value
    ignored; an exception is reported and the run goes on.
    """


@hookspec
def run_end(run, result):
    """Called once per run, last: after ``result.json`` (or ``error.json``) is written.

    ``result`` is the :class:`promptopt.sdk.RunResult` (metrics, compute, timings, output directory); on failure its
    ``status`` is ``"failed"`` and ``error`` holds the message, and the run's exception is raised after this hook.
    For a run over several tasks it is the whole run's result (``task`` the tasks joined by ``+``, ``metrics["eval"]``
    their mean score, ``metrics["tasks"]`` each task's), written to the top of its run directory.
    Logging hook: return value ignored; an exception is reported and the run goes on.
    """
