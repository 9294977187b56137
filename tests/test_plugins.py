import logging
import json
import sys
import textwrap
from importlib import metadata
from pathlib import Path

import click
import pluggy
import pytest

import promptopt
from promptopt import hookspecs
from promptopt.errors import PromptoptError
from promptopt.pipeline.methods import OptimizeResult, PromptOptimizer
from promptopt.plugins import get_optimizer, make_plugin_manager, optimizers, tasks

from conftest import REPO

EXAMPLE = REPO / "examples" / "promptopt-instructions"


@pytest.fixture
def example_plugin_installed(tmp_path, monkeypatch):
    """Make the example plugin visible through a real ``promptopt`` entry point (a dist-info on sys.path)."""
    dist = tmp_path / "promptopt_instructions-0.1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: promptopt-instructions\nVersion: 0.1.0\n")
    (dist / "entry_points.txt").write_text("[promptopt]\ninstructions = promptopt_instructions\n")
    monkeypatch.syspath_prepend(str(EXAMPLE))
    monkeypatch.syspath_prepend(str(tmp_path))
    yield
    sys.modules.pop("promptopt_instructions", None)


def test_builtin_methods_are_found_through_entry_points():
    eps = {ep.name: ep.value for ep in metadata.entry_points(group="promptopt")}
    assert eps["manual"] == "promptopt_plugins.manual"
    assert optimizers()["manual"][1] == "manual"


def test_example_plugin_is_discovered_through_its_entry_point_and_runs(example_plugin_installed, tiny_model_dirs,
                                                                       tmp_path, monkeypatch):  # fmt: skip
    pm = make_plugin_manager()
    cls, plugin = optimizers(pm)["instructions"]
    assert plugin == "instructions" and cls.__module__ == "promptopt_instructions"
    log = tmp_path / "events.jsonl"
    monkeypatch.setenv("PROMPTOPT_EVENT_LOG", str(log))
    result = promptopt.run(method="instructions", task=str(REPO / "datasets/tiny_reviews/task.toml"),
                           model=str(tiny_model_dirs["causal"]), max_eval=6, output=str(tmp_path / "run"),
                           progress=False, pm=pm)  # fmt: skip
    assert result.status == "ok" and (tmp_path / "run" / "result.json").exists()
    events = [json.loads(line)["event"] for line in log.read_text().splitlines()]
    assert events[0] == "run_start" and events[-1] == "run_end"
    assert {"training_step", "evaluation"} <= set(events)


def test_plugin_restriction_loads_only_named_entry_points(example_plugin_installed, monkeypatch):
    assert set(optimizers(make_plugin_manager(allow="manual,tasks"))) == {"manual"}
    monkeypatch.setenv("PROMPTOPT_PLUGINS", "instructions")
    assert set(optimizers(make_plugin_manager())) == {"instructions"}
    with pytest.raises(PromptoptError, match="not installed"):
        make_plugin_manager(allow="nope")


def test_misspelled_hook_implementation_fails_loudly():
    class Typo:
        @promptopt.hookimpl
        def register_optimiser(self, register):  # British spelling: not a hook
            pass

    with pytest.raises(pluggy.PluginValidationError):
        make_plugin_manager(extra_plugins=[Typo()])


def test_duplicate_method_names_are_an_error_naming_both_plugins():
    class Dupe:
        @promptopt.hookimpl
        def register_optimizers(self, register):
            register(type("Other", (PromptOptimizer,), {"name": "manual"}))

    with pytest.raises(PromptoptError, match="registered twice"):
        optimizers(make_plugin_manager(extra_plugins=[Dupe()]))


def test_unknown_method_lists_registered_ones():
    with pytest.raises(PromptoptError, match=r"no method 'nope'; registered: .*'manual'"):
        get_optimizer("nope")


def test_register_tasks_hook_adds_a_task_from_a_plugin(tmp_path):
    spec = tmp_path / "t.toml"
    spec.write_text(textwrap.dedent("""\
        name = "plugin-task"
        inputs = ["x"]
        templates = ["{x}{answer}"]
        label_words = { a = "yes", b = "no" }
        [splits.dev]
        path = "{spec_dir}/dev.jsonl"
        """))

    class TaskPlugin:
        @promptopt.hookimpl
        def register_tasks(self, register):
            register(spec)

    assert tasks(make_plugin_manager(extra_plugins=[TaskPlugin()]))["plugin-task"].path == spec


def test_register_commands_hook_adds_a_cli_command():
    class CommandPlugin:
        @promptopt.hookimpl
        def register_commands(self, cli):
            @cli.command(name="hello-plugin")
            def hello():
                click.echo("hi")

    group = click.Group()
    make_plugin_manager(extra_plugins=[CommandPlugin()]).hook.register_commands(cli=group)
    assert "hello-plugin" in group.commands


def test_every_hookspec_is_documented_and_the_suite_checks_it_is_called():
    from conftest import HOOK_NAMES, missing_hooks

    assert set(HOOK_NAMES) == {"register_optimizers", "register_tasks", "register_commands", "run_start",
                               "training_step", "evaluation", "run_end"}  # fmt: skip
    readme = (REPO / "README.md").read_text()
    for name in HOOK_NAMES:
        doc = getattr(hookspecs, name).__doc__
        assert "Called" in doc and ("Logging hook" in doc or "Raising" in doc), name  # when, and what a raise does
        assert f"`{name}" in readme, f"hook {name} is not documented in the README"
    # the session-end check (conftest.pytest_sessionfinish) fails a whole-suite run that called a hook nowhere
    assert missing_hooks(set(HOOK_NAMES) - {"evaluation"}) == ["evaluation"]
    assert missing_hooks(set(HOOK_NAMES)) == []


class Broken:
    def __init__(self, strict: bool = False):
        self.promptopt_strict_hooks = strict

    @promptopt.hookimpl
    def training_step(self, run, step, loss, lr):
        raise RuntimeError("tracker offline")


@pytest.mark.parametrize("strict", [False, True])
def test_a_failing_logging_hook_is_reported_and_does_not_kill_the_run_unless_strict(tiny_lms, tmp_path, caplog,
                                                                                     strict):  # fmt: skip
    pm = make_plugin_manager(extra_plugins=[Broken(strict)])
    args = dict(method="soft", task=str(REPO / "datasets/tiny_reviews/task.toml"), lm=tiny_lms["causal"],
                output=str(tmp_path / "r"), max_train=8, max_eval=4, progress=False, pm=pm,
                train={"steps": 2, "batch_size": 4}, method_options={"n_tokens": 2})  # fmt: skip
    if strict:
        with pytest.raises(RuntimeError, match="tracker offline"):
            promptopt.run(**args)
        assert (tmp_path / "r" / "error.json").exists()
        return
    with caplog.at_level(logging.WARNING, logger="promptopt.plugins"):
        result = promptopt.run(**args)
    assert result.status == "ok" and (tmp_path / "r" / "result.json").exists()
    assert "plugin 'Broken' failed in hook training_step (RuntimeError: tracker offline)" in caplog.text


def manager_with(optimizer_cls):
    """A plugin manager with the built-ins and one more method, registered as a plugin would."""

    class OnePlugin:
        @promptopt.hookimpl
        def register_optimizers(self, register):
            register(optimizer_cls)

    return make_plugin_manager(extra_plugins=[OnePlugin()])


def test_optimize_result_of_a_method_is_what_gets_scored(tiny_model_dirs, tmp_path):
    class Fixed(PromptOptimizer):
        name = "fixed"

        def optimize(self, run):
            return OptimizeResult(prompt=promptopt.Prompt.from_template("{text} Verdict:{answer}"))

    pm = manager_with(Fixed)
    result = promptopt.run(method="fixed", task=str(REPO / "datasets/tiny_reviews/task.toml"),
                           model=str(tiny_model_dirs["masked"]), max_eval=5, output=str(tmp_path / "r"),
                           progress=False, pm=pm)  # fmt: skip
    assert result.prompt_text == "{text} Verdict:{answer}" and result.metrics["eval"]["n"] == 5


def test_a_method_s_training_defaults_apply_unless_the_run_sets_them(tiny_model_dirs, tmp_path):
    seen = []

    class Quick(PromptOptimizer):
        name = "quick"
        train_defaults = {"steps": 7, "lr": 0.5}

        def optimize(self, run):
            seen.append((run.train_config.steps, run.train_config.lr, run.train_config.batch_size))
            return OptimizeResult(prompt=promptopt.Prompt.from_template("{text} Verdict:{answer}"))

    pm = manager_with(Quick)
    args = dict(method="quick", task=str(REPO / "datasets/tiny_reviews/task.toml"), model=str(tiny_model_dirs["masked"]),
                max_eval=5, progress=False, pm=pm)  # fmt: skip
    promptopt.run(output=str(tmp_path / "a"), **args)
    promptopt.run(output=str(tmp_path / "b"), train={"steps": 3}, **args)
    assert seen == [(7, 0.5, 16), (3, 0.5, 16)]  # the run's own --steps wins; the rest stay the loop's defaults
    assert json.loads((tmp_path / "a" / "config.json").read_text())["train"]["steps"] == 7  # provenance
