"""The ``promptopt`` command: thin click commands over :mod:`promptopt.pipeline.runner`."""

from __future__ import annotations

import json
import logging
import sys

import click

from promptopt.pipeline import config as cfg
from promptopt.errors import PromptoptError
from promptopt.data.prompt import decode_escapes


class _Group(click.Group):
    """Prints PromptoptError as one clear message (exit 2), never a traceback from deep inside torch."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except PromptoptError as e:
            click.secho(f"Error: {e}", fg="red", err=True)
            sys.exit(2)
        except (PermissionError, IsADirectoryError, NotADirectoryError, FileExistsError) as e:
            click.secho(f"Error: {e.filename}: {e.strerror}", fg="red", err=True)
            sys.exit(2)


@click.group(cls=_Group)
@click.version_option(package_name="promptopt")
@click.option("--plugins", "plugins", default=None, help="Comma-separated plugin names to load (default: all).")
@click.option("-v", "--verbose", is_flag=True, help="Log what the engine decides.")
def cli(plugins, verbose):
    """Specialise a frozen language model to a task by optimising only its prompt."""
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if plugins is not None:
        from promptopt.plugins import make_plugin_manager, reset_plugin_manager

        reset_plugin_manager(make_plugin_manager(allow=plugins))


_train_options = cfg.train_flags


def _load_templates(template, templates_file):
    out = [decode_escapes(t) for t in template]
    if templates_file:
        with open(templates_file, encoding="utf-8") as f:
            for line in f:
                line = line.rstrip("\n")
                if line.strip() and not line.lstrip().startswith("#"):
                    out.append(decode_escapes(line))
    return out


from promptopt.pipeline.runner import RunOptions  # noqa: E402 - the flags of 'run' are generated from its fields


@cli.command()
@cfg.click_options(RunOptions, exclude=("templates",))
@click.option("-t", "--template", multiple=True, help="Template, e.g. 'Review: {sentence}\\nSentiment:{answer}'.")
@click.option("--templates-file", type=click.Path(exists=True, dir_okay=False), help="One template per line.")
@click.option("-o", "--option", "options", multiple=True, help="Method option KEY=VALUE (see 'promptopt methods').")
@_train_options
def run(template, templates_file, options, **kwargs):
    """Optimise a prompt for a task with one method, score it, and write a run directory."""
    from promptopt.pipeline.runner import run as api_run

    train = {k[len("train_"):]: v for k, v in kwargs.items() if k.startswith("train_") and v is not None}
    opts = RunOptions(**cfg.from_click(RunOptions, {k: v for k, v in kwargs.items() if not k.startswith("train_")}),
                      templates=_load_templates(template, templates_file), method_options=cfg.parse_pairs(options),
                      train=train)  # fmt: skip
    result = api_run(opts)
    metrics = result.metrics["eval"]
    click.echo(f"prompt:    {result.prompt_text!r}")
    if "label_words" in result.config:
        click.echo(f"labels:    {result.config['label_words']}")
    if result.select_metrics:
        click.echo(f"select:    {result.select_metrics.get('score', 0):.4f} on {result.config['data']['select']} examples of {result.config['data']['select_split']}")
    shown = {k: round(v, 4) for k, v in metrics.items() if isinstance(v, float)}
    click.echo(f"eval:      {shown} on {metrics['n']} examples of {result.config['data']['eval_split']}")
    click.echo(f"time:      optimise {result.train_seconds:.1f}s, evaluate {result.eval_seconds:.1f}s "
               f"({result.eval_examples_per_second:.1f} ex/s)")  # fmt: skip
    spent = result.compute
    click.echo(f"compute:   optimise {spent['train']['flops']:.3g} FLOPs, evaluate {spent['eval']['flops']:.3g} FLOPs"
               + (" (budget spent: stopped early)" if result.budget_spent else ""))  # fmt: skip
    click.echo(f"written:   {result.output_dir}")


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def methods(as_json):
    """List the registered methods, the plugin that registered each, and their options."""
    from promptopt.plugins import optimizers

    found = optimizers()
    rows = []
    for name, (cls, plugin) in sorted(found.items()):
        rows.append({"method": name, "plugin": plugin, "description": cls.description,
                     "train_defaults": dict(cls.train_defaults),
                     "options": [{"name": n, "type": t, "default": d, "help": h}
                                 for n, t, d, h in cfg.field_help(cls.config_class)]})  # fmt: skip
    if as_json:
        click.echo(json.dumps(rows, indent=2, default=str))
        return
    for row in rows:
        click.echo(f"{row['method']}  (plugin: {row['plugin']})\n    {row['description']}")
        if row["train_defaults"]:
            flags = " ".join(f"--{k.replace('_', '-')} {v}" for k, v in row["train_defaults"].items())
            click.echo(f"    training defaults (a run's own flags win): {flags}")
        for opt in row["options"]:
            click.echo(f"    -o {opt['name']}=<{opt['type']}>  {opt['help']} (default {opt['default']!r})")


@cli.command()
@click.argument("names", nargs=-1)
def tasks(names):
    """List the registered tasks; with NAMES (task names or spec files), check each one's spec and data without
    loading a model: split sizes, label counts, and every problem found (exit status 2 if there is one)."""
    from promptopt.data.tasks import check_task
    from promptopt.plugins import get_task
    from promptopt.plugins import tasks as registered

    if not names:
        for name, spec in sorted(registered().items()):
            click.echo(f"{name:<16} {spec.kind.value:<15} {spec.description}")
        return
    failed = False
    for name in names:
        try:
            spec = get_task(name)
        except PromptoptError as e:
            click.secho(f"{name}: {e}", fg="red")
            failed = True
            continue
        found = check_task(spec)
        click.echo(f"{spec.name} ({spec.kind.value}, {spec.path or 'registered'}): templates {len(spec.templates)}, "
                   f"labels {list(spec.label_words)}")  # fmt: skip
        for split, info in found.splits.items():
            click.echo(f"  {split:<6} {info['examples']:>7} examples  " + ", ".join(f"{k}: {v}" for k, v in info["labels"].items()))
        for problem in found.problems:
            click.secho(f"  problem: {problem}", fg="red")
        for warning in found.warnings:
            click.secho(f"  warning: {warning}", fg="yellow")
        for note in found.notes:
            click.echo(f"  note: {note}")
        failed = failed or bool(found.problems)
    if failed:
        sys.exit(2)


@cli.command("eval")
@click.option("--prompt", "prompt_dir", required=True, type=click.Path(exists=True, file_okay=False))
@click.option("--task", required=True)
@click.option("--split", default="dev", show_default=True)
@click.option("--model", default=None, help="Default: the model the prompt was made for.")
@click.option("--max-eval", type=int, default=None)
@click.option("--batch-size", default=16, show_default=True, type=int)
@click.option("--device", default=None)
@click.option("--dtype", default=None, help="Default: the dtype the prompt was scored in when it was saved.")
@click.option("--scoring", default=None, type=click.Choice(["loglik", "norm_token", "norm_char", "calibrated"]),
              help="Class scoring rule (default: the one the run scored with, else the task's).")
@click.option("--chat-template/--no-chat-template", default=None,
              help="Wrap the prompt in the tokenizer's chat template (default: as the run did).")
@click.option("--allow-other-model", is_flag=True,
              help="Score soft vectors trained on other weights, or token ids of another tokenizer, anyway.")
def eval_cmd(prompt_dir, task, split, model, max_eval, batch_size, device, dtype, scoring, chat_template,
             allow_other_model):  # fmt: skip
    """Re-score a saved prompt on a task split, scored as the run scored it (rule, chat template, dtype) unless
    overridden."""
    from promptopt.pipeline.runner import evaluate_prompt

    result = evaluate_prompt(prompt_dir, task, split=split, model=model, max_eval=max_eval, batch_size=batch_size,
                             device=device, dtype=dtype, scoring=scoring, chat_template=chat_template,
                             allow_other_model=allow_other_model)  # fmt: skip
    click.echo(json.dumps({k: v for k, v in result.metrics.items()}, indent=2))


def _register_plugin_commands():
    from promptopt.plugins import get_plugin_manager

    try:
        get_plugin_manager().hook.register_commands(cli=cli)
    except PromptoptError as e:  # a broken plugin must not take the whole CLI down
        click.secho(f"Warning: {e}", fg="yellow", err=True)


_register_plugin_commands()


# -- leaderboards, reports, inspection -------------------------------------------------------------------------------


def _command_line(ctx: click.Context) -> str:
    """The command as typed, rebuilt from the options given on the command line (also under click's test runner)."""
    import shlex
    from click.core import ParameterSource

    words = []
    for c in (ctx.parent, ctx) if ctx.parent is not None else (ctx,):
        if c is ctx:
            words.append(ctx.info_name)
        for param in c.command.params:
            if c.get_parameter_source(param.name) != ParameterSource.COMMANDLINE:
                continue
            value = c.params[param.name]
            if not isinstance(param, click.Option):
                words += [str(v) for v in (value if isinstance(value, (list, tuple)) else [value])]
            elif param.is_flag:
                words.append(max(param.opts, key=len))
            else:
                for v in value if param.multiple else [value]:
                    words += [max(param.opts, key=len), str(v)]
    return "promptopt " + shlex.join(words)


@cli.command()
@click.option("--methods", default="all", show_default=True, help="Comma-separated method ids, or 'all' (every registered method).")
@click.option("--tasks", default="tiny-reviews", show_default=True, help="Comma-separated task names or spec files.")
@click.option("--seeds", default="3", show_default=True,
              help="N (seeds 0..N-1) or a comma-separated list of seeds; with --kshot always seeds (13 = seed 13).")
@click.option("--models", default=None, help="Comma-separated model ids or paths (default: the embedded default model).")
@click.option("--output", required=True,
              help="Suite directory: runs go to OUTPUT/MODEL/TASK/METHOD/seedK (.../METHOD/shots16/seedK and the like "
                   "when sizes or templates vary).")
@click.option("--collect", multiple=True, type=click.Path(exists=True, file_okay=False),
              help="A directory of runs made by 'promptopt run' to include in the report (repeatable).")
@click.option("--max-train", default=None,
              help="Sample at most N training examples; a comma list (100,1000) runs each size "
                   "(data-efficiency curve).")
@click.option("--shots", default=None,
              help="Sample N training examples per class; a comma list (4,16,64) runs each size "
                   "(data-efficiency curve).")
@click.option("--same-template", type=click.Choice(["first", "each"]), default=None,
              help="first: every method gets only the task's first template; each: one combination per template "
                   "(default: methods get all templates).")
@click.option("--kshot", type=int, default=None,
              help="K: LM-BFF's few-shot protocol; each seed S trains and selects on the task's k-shot split K-S "
                   "(e.g. --kshot 16 --seeds 13,21,42) and is reported on the full test set.")
@click.option("--baselines", is_flag=True,
              help="Add baseline rows: majority class (the most frequent training label) and zero-shot manual (each "
                   "template scored once without training; the best shown).")
@cfg.click_options(RunOptions, names=["model_kind", "max_eval", "eval_seed", "select_split", "eval_split", "batch_size",
                                      "device", "dtype", "budget_flops"])  # the run settings every run of the suite shares
@click.option("-o", "--option", "options", multiple=True,
              help="Method option KEY=VALUE (every method that has KEY) or METHOD.KEY=VALUE.")
@click.option("--title", default="promptopt leaderboard", show_default=True, help="Report title.")
@click.option("--note", "notes", multiple=True, help="A line for the report's header, e.g. the budget (repeatable).")
@click.option("--no-inspect", is_flag=True, help="Do not inspect trained prompts.")
@click.option("--quick-inspect", is_flag=True, help="Inspect trained prompts by nearest tokens and the projection's "
              "score only (no ablation, logit lens, distillation or self-description).")
@click.option("--plan", "plan_only", is_flag=True, help="Record the settings and planned runs in OUTPUT/suite.json, "
              "say how many have finished, and run nothing (a report then counts the runs still to do).")
@click.option("--progress", is_flag=True, help="Show progress bars inside each run.")
@_train_options
def leaderboard(methods, tasks, seeds, models, output, collect, max_train, shots, same_template, kshot, baselines,
                options, title, notes, no_inspect, quick_inspect, plan_only, progress, **kwargs):  # fmt: skip
    """Run every method x task x seed (x model) as ordinary runs, then write OUTPUT/report.{md,html,json,csv}.

    Finished runs are skipped when the command is repeated; a failing run is recorded and the others go on."""
    from promptopt.suite.leaderboard import SuiteConfig, parse_seeds, parse_sizes, run_suite, suite_progress

    def split(text):
        return [s.strip() for s in text.split(",") if s.strip()] if text else []

    train = {k[len("train_"):]: v for k, v in kwargs.items() if k.startswith("train_") and v is not None}
    shared = cfg.from_click(RunOptions, {k: v for k, v in kwargs.items() if not k.startswith("train_")})
    run_opts = RunOptions(**shared, train=train, progress=progress)
    config = SuiteConfig(methods=split(methods), tasks=split(tasks), seeds=parse_seeds(seeds, listed=kshot is not None),
                         models=[None if m == "default" else m for m in split(models)] or [None], output=output,
                         run=run_opts, method_options=cfg.parse_pairs(options), collect=list(collect),
                         inspect=not no_inspect, quick_inspect=quick_inspect, plan_only=plan_only, title=title,
                         shots=parse_sizes(shots, "--shots"), max_train=parse_sizes(max_train, "--max-train"),
                         same_template=same_template, kshot=kshot,
                         baselines=baselines,
                         meta={"command": _command_line(click.get_current_context()), "notes": list(notes)})  # fmt: skip

    def show(entry, index, total):
        variant = f" / {entry.variant}" if entry.variant else ""
        where = f"[{index}/{total}] {entry.model} / {entry.task} / {entry.method}{variant} / seed {entry.seed}"
        if entry.skipped:
            click.echo(f"{where}: finished before, skipped")
        elif entry.status == "ok":
            click.echo(f"{where}: ok ({entry.seconds:.1f}s)")
        else:
            click.secho(f"{where}: FAILED: {entry.error}", fg="red")
        if entry.inspect_error:
            click.secho(f"{where}: inspection failed: {entry.inspect_error}", fg="yellow")

    suite = run_suite(config, on_event=show)
    if plan_only:
        finished, planned = suite_progress([output]) or (0, 0)
        click.echo(f"{output}: {finished} of the {planned} planned runs have finished")
        return
    click.echo(f"{len(suite.entries) - len(suite.failed)} ok, {len(suite.failed)} failed")
    for fmt, path in suite.reports.items():
        click.echo(f"report ({fmt}): {path}")


@cli.command()
@click.argument("dirs", nargs=-1, required=True, type=click.Path(exists=True, file_okay=False))
@click.option("--format", "fmt", type=click.Choice(["md", "html", "json", "csv", "findings"]), default="md",
              show_default=True, help="findings: a short Markdown summary of what the results say, computed from them.")
@click.option("--output", default=None, type=click.Path(dir_okay=False), help="Write to this file (default: stdout).")
@click.option("--title", default=None, help="Report title (default: the suite's, if DIR holds one).")
def report(dirs, fmt, output, title):
    """Render the runs under DIR(s) (a leaderboard suite or 'promptopt run' outputs) as md, html, json or csv.

    A DIR holding continual-learning runs (continual.json in it or one level below) renders their accuracy matrices."""
    from promptopt.data.files import write_text
    from promptopt.suite.leaderboard import load_board
    from promptopt.report import render
    from promptopt.report.continual import load_continual, render_continual

    continual = load_continual(list(dirs))
    if continual:
        text = render_continual(continual, fmt, title=title)
    else:
        board = load_board(list(dirs), title=title)
        if not board.runs:
            raise PromptoptError(f"no run (result.json or error.json) under {', '.join(dirs)}")
        text = render(board, fmt)
    if output:
        write_text(output, text)
        click.echo(f"written: {output}", err=True)
    else:
        click.echo(text, nl=False)


@cli.command("inspect")
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False))
@click.option("--split", default=None,
              help="Split to re-score and choose the readable prompt on (default: the run's selection split; never "
                   "its reported split).")
@click.option("--max-eval", type=int, default=None, help="At most N examples (default: as many as the run selected on).")
@click.option("--top-k", default=5, show_default=True, type=int, help="Nearest tokens (and lens tokens) shown per soft vector.")
@click.option("--batch-size", default=16, show_default=True, type=int)
@click.option("--device", default=None)
@click.option("--json", "as_json", is_flag=True, help="Print the inspection as JSON.")
@click.option("--no-write", is_flag=True, help="Do not write RUN_DIR/inspect.json (and RUN_DIR/readable_prompt/).")
@click.option("--no-ablate", is_flag=True, help="Skip per-vector ablation.")
@click.option("--ablation", "ablation_modes", default="remove,mean", show_default=True,
              help="Ablation modes: remove (take the vector out) and/or mean (replace it by the mean embedding).")
@click.option("--no-lens", is_flag=True, help="Skip the logit lens.")
@click.option("--lens-layers", default=None, help="Comma-separated layers for the lens (default: first, middle, last).")
@click.option("--no-distill", is_flag=True, help="Skip the readable prompt's word-token search.")
@click.option("--distill-steps", type=int, default=None, help="Positions the search tries (default: each once).")
@click.option("--distill-candidates", type=int, default=8, show_default=True, help="Candidate tokens per step.")
@click.option("--distill-train", type=int, default=64, show_default=True, help="Training examples distilled on.")
@click.option("--no-describe", is_flag=True, help="Skip the self-description probe.")
@click.option("--wayward", is_flag=True, help="Waywardness check: retrain with a pull towards an unrelated text.")
@click.option("--wayward-text", default=None, help="The unrelated text (default: a pangram).")
@click.option("--wayward-lambda", type=float, default=1.0, show_default=True, help="Weight of the pull.")
@click.option("--wayward-steps", type=int, default=None, help="Training steps of the check (default: the run's).")
@click.option("--eval-split", default=None, help="Also score soft, projected and readable prompts on this split.")
def inspect_cmd(run_dir, split, max_eval, top_k, batch_size, device, as_json, no_write, no_ablate, ablation_modes,
                no_lens, lens_layers, no_distill, distill_steps, distill_candidates, distill_train, no_describe,
                wayward, wayward_text, wayward_lambda, wayward_steps, eval_split):  # fmt: skip
    """Read a run's prompt: soft vectors' nearest tokens and norms, a logit lens at each soft position, per-vector
    ablation, the projected prompt (each vector replaced by its nearest token) and a readable prompt distilled from
    it, scored against the soft one; a self-description probe and optionally a waywardness check. For hard prompts,
    the text and token ids."""
    from promptopt.interpret.inspection import InspectOptions, inspect_run, render_text
    from promptopt.interpret.wayward import DEFAULT_TEXT

    if top_k < 1:
        raise PromptoptError(f"--top-k must be >= 1, got {top_k}")
    try:
        layers = [int(x) for x in lens_layers.split(",") if x.strip()] if lens_layers else None
    except ValueError:
        raise PromptoptError(f"--lens-layers {lens_layers!r}: give comma-separated integers") from None
    modes = tuple(m.strip() for m in ablation_modes.split(",") if m.strip())
    options = InspectOptions(ablate=not no_ablate, ablation_modes=modes, lens=not no_lens, lens_layers=layers,
                             distill=not no_distill,
                             distill_steps=distill_steps, distill_candidates=distill_candidates,
                             distill_train=distill_train, describe=not no_describe, wayward=wayward,
                             wayward_text=wayward_text or DEFAULT_TEXT, wayward_lambda=wayward_lambda,
                             wayward_steps=wayward_steps, eval_split=eval_split)  # fmt: skip
    result = inspect_run(run_dir, split=split, max_eval=max_eval, top_k=top_k, batch_size=batch_size, device=device,
                         write=not no_write, options=options)  # fmt: skip
    click.echo(json.dumps(result.to_json(), indent=2, ensure_ascii=False) if as_json else render_text(result))


@cli.command()
@click.argument("text", required=False)
@click.option("--prompt", "prompt_dir", required=True, type=click.Path(exists=True, file_okay=False))
@click.option("-f", "--field", "fields", multiple=True, help="Input field NAME=VALUE (for prompts with several fields).")
@click.option("--model", default=None, help="Default: the model the prompt was made for.")
@click.option("--max-new-tokens", default=32, show_default=True, type=int)
@click.option("--temperature", default=0.0, show_default=True, type=float, help="0 = greedy; > 0 samples (seeded).")
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--no-cache", is_flag=True, help="Recompute the whole sequence at every step (same output, slower).")
@click.option("--device", default=None)
def generate(text, prompt_dir, fields, model, max_new_tokens, temperature, seed, no_cache, device):
    """Generate a continuation of a saved prompt filled with TEXT (its context up to {answer})."""
    from promptopt.engine.model import load_model
    from promptopt.engine.generate import fill_inputs
    from promptopt.engine.generate import generate as run_generate
    from promptopt.data.prompt import Prompt

    prompt = Prompt.load(prompt_dir)
    inputs = fill_inputs(prompt, text, cfg.parse_pairs(fields))
    lm = load_model(model or prompt.meta.get("model"), device=device)
    out = run_generate(lm, prompt, inputs, max_new_tokens=max_new_tokens, use_cache=not no_cache,
                       temperature=temperature, seed=seed)  # fmt: skip
    click.echo(out.text)


@cli.command("export-peft")
@click.option("--prompt", "prompt_dir", required=True, type=click.Path(exists=True, file_okay=False))
@click.option("--output", required=True, type=click.Path(file_okay=False), help="Adapter directory to write.")
@click.option("--model", default=None, help="Base model named in the adapter (default: the prompt's model).")
@click.option("--peft-type", default=None, type=click.Choice(["PROMPT_TUNING", "P_TUNING"], case_sensitive=False),
              help="For vectors in front: the PEFT kind (default: P_TUNING for a P-tuning prompt, else PROMPT_TUNING).")  # fmt: skip
def export_peft_cmd(prompt_dir, output, model, peft_type):
    """Write a saved prompt as a PEFT adapter directory: prompt tuning or P-tuning (vectors in front), prefix
    tuning (a deep prefix) or LoRA (a low-rank model edit)."""
    from promptopt.interop.peft import export_peft

    click.echo(f"written: {export_peft(prompt_dir, output, model=model, peft_type=peft_type)}")


@cli.command("import-peft")
@click.argument("adapter_dir", type=click.Path(exists=True, file_okay=False))
@click.option("--output", required=True, type=click.Path(file_okay=False), help="Prompt directory to write.")
@click.option("-t", "--template", default=None, help="Template: for vectors, starting with the adapter's [P*n]; for a "
              "prefix or LoRA, without slots (default: the one saved by export-peft, else '[P*n]{text}{answer}' or "
              "'{text}{answer}').")  # fmt: skip
def import_peft_cmd(adapter_dir, output, template):
    """Turn a PEFT adapter directory (prompt tuning, P-tuning, prefix tuning, LoRA) into a promptopt prompt directory."""
    from promptopt.interop.peft import import_peft

    click.echo(f"written: {import_peft(adapter_dir, output, template=decode_escapes(template) if template else None)}")
