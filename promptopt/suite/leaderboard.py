"""Leaderboard suites: every method x task x seed (x model) as ordinary runs, resumable, then the report.

    from promptopt.suite.leaderboard import SuiteConfig, run_suite
    suite = run_suite(SuiteConfig(tasks=["sst2", "rte"], seeds=[0, 1, 2], output="runs/board"))
    print(suite.reports["md"])

Runs go to ``OUTPUT/<model>/<task>/<method>/seed<k>`` (``.../<method>/<setting>/seed<k>`` when the suite varies the
training-set size, ``shots=[4, 16]`` or ``max_train=[...]``, or the template, ``same_template="each"``: see
:func:`variant_dir`) through :func:`promptopt.pipeline.runner.run`, so each is a normal run
directory. A run whose ``result.json`` exists is skipped when the suite is run again; a failing run is recorded
(``error.json``) and the suite goes on. Each model is loaded once. Methods default to every registered method.

Under a launcher (``torchrun --nproc_per_node N`` / ``accelerate launch``), the N processes share out whole runs:
combination ``i`` (in the suite's order) goes to process ``i mod N``, which runs it alone on its own device (one
run per device at a time; CUDA device ``LOCAL_RANK``). A re-launch, with any N, skips finished runs and resumes
interrupted ones, as in one process. Process 0 writes ``suite.json`` and the reports once every process is done.
"""

from __future__ import annotations

import dataclasses
import datetime
import gc
import json
import logging
import math
import os
import platform
import re
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from promptopt.pipeline import config as cfg
from promptopt.pipeline.runner import RunOptions
from promptopt.pipeline.runner import run as api_run
from promptopt.engine import distributed
from promptopt.engine.model import DEFAULT_MODEL, LoadedModel, load_model
from promptopt.errors import ConfigError, PromptoptError
from promptopt.interpret.inspection import INSPECT_FILE, InspectOptions, inspect_run
from promptopt.data.files import read_json, write_json, write_text
from promptopt.plugins import get_plugin_manager, get_task, optimizers
from promptopt.report import Leaderboard, RunEntry, build_leaderboard, render
from promptopt.report.model import BASELINE, ZERO_SHOT
from promptopt.pipeline.results import RunResult

log = logging.getLogger(__name__)

SUITE_FILE = "suite.json"
SUITE_SCHEMA = "promptopt.suite"
SUITE_SCHEMA_VERSION = 1
REPORT_FORMATS = ("md", "html", "json", "csv")
MAX_CURVE_POINTS = 200
#: the suite's zero-shot baseline runs: ``OUTPUT/MODEL/TASK/zero-shot-manual/templateI/seedK``
ZERO_SHOT_DIR = ZERO_SHOT


@dataclass
class SuiteConfig:
    """What a leaderboard suite runs. ``run`` holds the run options shared by every run (sampling, training, device);
    its method, task, model, seed and output are set per run."""

    methods: list[str] = field(default_factory=list, metadata={"help": "method ids; empty or ['all'] = every registered method"})
    tasks: list[str] = field(default_factory=lambda: ["tiny-reviews"], metadata={"help": "task names or spec files"})
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2], metadata={"help": "seeds; each combination runs once per seed"})
    models: list[str | None] = field(default_factory=lambda: [None], metadata={"help": "models (None: the default model)"})
    output: str = field(default="runs/leaderboard", metadata={"help": "suite directory"})
    run: RunOptions = field(default_factory=lambda: RunOptions(progress=False), metadata={"help": "shared run options"})
    method_options: dict = field(default_factory=dict, metadata={"help": "KEY=VALUE for every method with option KEY, or METHOD.KEY=VALUE"})
    collect: list[str] = field(default_factory=list, metadata={"help": "more directories whose runs join the report"})
    inspect: bool = field(default=True, metadata={"help": "inspect trained prompts (soft vectors, token segments)"})
    plan_only: bool = field(default=False, metadata={"help": "record the suite's settings and planned runs in suite.json and run nothing"})
    quick_inspect: bool = field(default=False, metadata={"help": "inspect by nearest tokens and the projection's score only (no ablation, logit lens, distillation or self-description: minutes less per soft run on a CPU)"})
    title: str = field(default="promptopt leaderboard", metadata={"help": "report title"})
    meta: dict = field(default_factory=dict, metadata={"help": "shown in the report (command, notes)"})
    shots: list[int] = field(default_factory=list, metadata={"help": "training examples per class, one combination per value (data-efficiency curves); one value: the same as run.shots"})
    max_train: list[int] = field(default_factory=list, metadata={"help": "training-set sizes, one combination per value; one value: the same as run.max_train"})
    same_template: str | None = field(default=None, metadata={"help": "'first': every method gets only the task's first template; 'each': one combination per template; None: methods get all templates"})
    kshot: int | None = field(default=None, metadata={"help": "K: LM-BFF's few-shot protocol, every run of seed S on the task's k-shot split K-S (train and select there, report on the full test set)"})
    baselines: bool = field(default=False, metadata={"help": "add the report's baseline rows: majority class (from the training labels) and zero-shot manual (the task's first template scored with no training and no selection)"})

    def __post_init__(self):
        if not self.tasks:
            raise ConfigError("SuiteConfig.tasks is empty; name at least one task (see 'promptopt tasks')")
        if not self.seeds:
            raise ConfigError("SuiteConfig.seeds is empty; give a count N (seeds 0..N-1) or a list")
        if len(set(self.seeds)) != len(self.seeds):
            raise ConfigError(f"SuiteConfig.seeds has duplicates: {self.seeds}")
        if not self.models:
            self.models = [None]
        if self.kshot is not None and (isinstance(self.kshot, bool) or not isinstance(self.kshot, int) or self.kshot < 1):
            raise ConfigError(f"SuiteConfig.kshot is {self.kshot!r}; give K, the examples per class of the k-shot splits")
        if self.kshot is not None and (self.shots or self.max_train or self.run.shots or self.run.max_train):
            raise ConfigError("SuiteConfig.kshot: a k-shot split fixes the training set; give no shots or max_train")
        if self.same_template not in (None, "first", "each"):
            raise ConfigError(f"SuiteConfig.same_template is {self.same_template!r}; choose 'first', 'each' or None")
        for name in ("shots", "max_train"):
            values = list(getattr(self, name))
            if len(set(values)) != len(values):
                raise ConfigError(f"SuiteConfig.{name} has duplicates: {values}")
            if any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in values):
                raise ConfigError(f"SuiteConfig.{name}: give whole numbers >= 1, got {values}")
            if len(values) == 1:  # one size is today's single setting: same run directories, same settings record
                setattr(self.run, name, values[0])
                values = []
            setattr(self, name, values)

    def settings_of(self, task) -> list["Setting"]:
        """The training-set size x template combinations of one task, in order (one, today's, by default)."""
        shots = self.shots or [self.run.shots]
        max_train = self.max_train or [self.run.max_train]
        given = list(self.run.templates) or list(task.templates)
        if self.same_template == "each" and len(given) > 1:
            templates = list(range(len(given)))
        else:
            templates = [0 if self.same_template and given else None]
        return [Setting(s, m, t, given[t] if t is not None else None,
                        variant_dir(s if self.shots else None, m if self.max_train else None,
                                    t if len(templates) > 1 else None))
                for s in shots for m in max_train for t in templates]  # fmt: skip


@dataclass
class Setting:
    """One training-set size and template choice of a suite; ``directory`` is its run-directory level ("" for
    a suite with a single setting, whose runs keep the ``METHOD/seedK`` layout)."""

    shots: int | None
    max_train: int | None
    template_index: int | None
    template: str | None
    directory: str


def variant_dir(shots: int | None, max_train: int | None, template_index: int | None) -> str:
    """The run-directory level of a suite setting: ``shots16``, ``train100``, ``template1`` joined by ``-``, for
    the parts the suite varies; empty when it varies none."""
    parts = ([f"shots{shots}"] if shots is not None else []) + ([f"train{max_train}"] if max_train is not None else [])
    return "-".join(parts + ([f"template{template_index}"] if template_index is not None else []))


_VARIANT_DIR = re.compile(r"(?:shots(\d+))?-?(?:train(\d+))?-?(?:template(\d+))?")


def parse_variant_dir(name: str) -> dict | None:
    """The settings named by a :func:`variant_dir` level (``shots``, ``max_train``, ``template_index``), or None
    when ``name`` is not one."""
    m = _VARIANT_DIR.fullmatch(name)
    if not m or not name or not any(m.groups()):
        return None
    shots, max_train, template = (int(g) if g is not None else None for g in m.groups())
    return {"shots": shots, "max_train": max_train, "template_index": template}


@dataclass
class SuiteEntry:
    """One combination of the suite: ``status`` ``"ok"`` or ``"failed"``; ``skipped`` when it had finished before."""

    model: str
    task: str
    method: str
    seed: int
    run_dir: str
    status: str = "ok"
    skipped: bool = False
    error: str | None = None
    seconds: float = 0.0
    inspect_error: str | None = None
    variant: str = ""  # the run-directory level of its setting (variant_dir), empty for a single-setting suite


@dataclass
class SuiteResult:
    entries: list[SuiteEntry]
    board: Leaderboard
    reports: dict[str, Path]

    @property
    def failed(self) -> list[SuiteEntry]:
        return [e for e in self.entries if e.status != "ok"]


def parse_seeds(text: str | int, listed: bool = False) -> list[int]:
    """``"3"`` -> [0, 1, 2]; ``"0,5,7"`` -> [0, 5, 7]. With ``listed`` (the k-shot protocol, whose seeds name
    splits) a single number is that one seed: ``"13"`` -> [13]."""
    try:
        if not listed and (isinstance(text, int) or "," not in str(text)):
            n = int(text)
            if n < 1:
                raise ConfigError(f"--seeds {n}: give at least 1")
            return list(range(n))
        return [int(s) for s in str(text).split(",") if s.strip()]
    except ValueError:
        raise ConfigError(f"--seeds {text!r}: give a count N or a comma-separated list of integers") from None


def parse_sizes(text: str | int | None, option: str = "--shots") -> list[int]:
    """``None`` -> []; ``"16"`` -> [16]; ``"4,16,64"`` -> [4, 16, 64] (whole numbers >= 1, no duplicates)."""
    if text is None or text == "":
        return []
    try:
        values = [int(v) for v in str(text).split(",") if v.strip()]
    except ValueError:
        raise ConfigError(f"{option} {text!r}: give a whole number or a comma-separated list (e.g. 4,16,64)") from None
    if not values or any(v < 1 for v in values) or len(set(values)) != len(values):
        raise ConfigError(f"{option} {text!r}: give distinct whole numbers >= 1 (e.g. 4,16,64)")
    return values


def resolve_methods(requested: list[str] | None, pm=None) -> list[str]:
    """The methods to run: every registered one (from the plugin manager) for an empty list or ``["all"]``."""
    registered = optimizers(pm)
    if not requested or [m.strip() for m in requested] == ["all"]:
        return sorted(registered)
    unknown = [m for m in requested if m not in registered]
    if unknown:
        raise ConfigError(f"--methods: no method {unknown}; registered: {sorted(registered)}")
    return list(dict.fromkeys(requested))


def split_method_options(raw: dict, methods: list[str], pm=None) -> dict[str, dict]:
    """Distribute ``-o`` options: ``METHOD.KEY`` goes to that method, a plain ``KEY`` to every method that has
    option KEY. An option no selected method has is an error naming the option."""
    classes = {name: cls for name, (cls, _) in optimizers(pm).items() if name in methods}
    out: dict[str, dict] = {m: {} for m in methods}
    for key, value in raw.items():
        method, _, name = key.rpartition(".")
        name = name.replace("-", "_")
        if method:
            if method not in out:
                raise ConfigError(f"option {key!r}: method {method!r} is not in this suite ({methods})")
            out[method][name] = value
            continue
        takers = [m for m, cls in classes.items() if name in {f.name for f in dataclasses.fields(cls.config_class)}]
        if not takers:
            raise ConfigError(f"option {key!r}: none of the methods {methods} has it (see 'promptopt methods')")
        for m in takers:
            out[m][name] = value
    for m, options in out.items():
        cfg.build(classes[m].config_class, options)  # fail before running anything
    return out


def model_label(model: str | None) -> str:
    return model or DEFAULT_MODEL


def slug(text: str) -> str:
    """A directory name for a model or task: letters, digits, ``.``, ``_`` and ``-`` only."""
    out = re.sub(r"[^A-Za-z0-9._-]+", "_", text.strip().strip("/")).strip("._")
    return out or "_"


def suite_run_dir(root: str | Path, model: str, task: str, method: str, seed: int, variant: str = "") -> Path:
    """``root/MODEL/TASK/METHOD[/VARIANT]/seedK``; ``variant`` is a :func:`variant_dir` level, empty for a suite with
    a single setting."""
    out = Path(root) / slug(model) / slug(task) / slug(method)
    return (out / variant if variant else out) / f"seed{seed}"


def machine_description() -> str:
    """CPU (model and usable cores), memory, GPU, OS and library versions: where the numbers were measured."""
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    parts = [f"{cpu}, {cores} cores usable"]
    try:
        kb = int(next(ln.split()[1] for ln in Path("/proc/meminfo").read_text().splitlines() if ln.startswith("MemTotal")))
        parts.append(f"{kb / 2**20:.0f} GiB RAM")
    except (OSError, StopIteration, ValueError):
        pass
    if torch.cuda.is_available():
        parts.append(f"GPU {torch.cuda.get_device_name(0)}")
    parts.append(f"{platform.system()} {platform.release()}")
    threads = torch.get_num_threads()
    plural = "s" if threads != 1 else ""
    parts.append(f"Python {platform.python_version()}, torch {torch.__version__} ({threads} thread{plural})")
    return "; ".join(parts)


def _settings(config: SuiteConfig) -> dict:
    run = config.run
    out = {k: getattr(run, k) for k in ("max_train", "shots", "max_eval", "select_split", "eval_split", "device",
                                       "dtype") if getattr(run, k) is not None}  # fmt: skip
    out["eval_batch_size"] = run.batch_size
    if run.budget_flops is not None:
        out["budget_flops"] = run.budget_flops
    if run.eval_seed:
        out["eval_seed"] = run.eval_seed
    for name in ("shots", "max_train"):
        if getattr(config, name):
            out[name] = ",".join(str(v) for v in getattr(config, name))
    if config.same_template:
        out["same_template"] = config.same_template
    if config.kshot is not None:
        out["kshot"] = config.kshot
    if config.baselines:
        out["baselines"] = True
    out.update({f"train.{k}": v for k, v in run.train.items()})
    out.update({f"option.{k}": v for k, v in config.method_options.items()})
    return out


def _needs_inspection(run_dir: Path) -> bool:
    """A finished run whose prompt has soft vectors or token segments and no ``inspect.json`` yet."""
    if not (run_dir / "result.json").exists() or (run_dir / INSPECT_FILE).exists():
        return False
    try:
        prompt = read_json(run_dir / "prompt" / "prompt.json")
    except (OSError, json.JSONDecodeError):
        return False
    return any(s.get("kind") in ("vectors", "tokens") for s in prompt.get("segments", []))


def _record_failure(run_dir: Path, entry: SuiteEntry, exc: BaseException) -> None:
    """Make sure ``error.json`` exists and names the combination (api.run writes it only for failures inside the
    method; a bad task or option fails earlier)."""
    path = run_dir / "error.json"
    record = {}
    if path.exists():
        try:
            record = read_json(path)
        except (OSError, json.JSONDecodeError):
            record = {}
    record.setdefault("error", entry.error)
    record.setdefault("traceback", "".join(traceback.format_exception(exc)))
    record.update({"model": entry.model, "task": entry.task, "method": entry.method, "seed": entry.seed})
    write_json(path, record)


def run_suite(config: SuiteConfig, pm=None, on_event: Callable[[SuiteEntry, int, int], None] | None = None,
              load: Callable[[str | None], LoadedModel] | None = None) -> SuiteResult:  # fmt: skip
    """Run every combination not finished yet, inspect trained prompts, write ``suite.json`` and the reports.

    ``load(model)`` loads a model (default :func:`~promptopt.engine.model.load_model` with the run options' device,
    dtype and model kind); it is called at most once per model, and only if that model has work to do.
    ``on_event(entry, index, total)`` is called after each combination.
    """
    rank, world = distributed.launch_rank()
    if world > 1:
        return _run_suite_shared(config, pm, on_event, load, rank, world)
    return _run_suite(config, pm, on_event, load)


def _run_suite_shared(config, pm, on_event, load, rank: int, world: int) -> SuiteResult:
    """One of ``world`` launched processes: its share of the runs, alone; then process 0 writes the reports."""
    group = distributed.patient_group()  # runs take hours: the default group's timeout would end the wait
    run_opts = config.run
    device = distributed.device()
    if load is None and device is not None and run_opts.device in (None, "auto", "cuda"):
        load = lambda name: load_model(name, device=str(device), dtype=run_opts.dtype, kind=run_opts.model_kind)  # noqa: E731
    with distributed.local():
        result = _run_suite(config, pm, on_event, load, share=(rank, world), report=False)
    parts = distributed.gather(result.entries, group=group)
    entries = [e for part in parts for e in part]
    if rank != 0:
        distributed.gather(None, group=group)  # wait for the reports, so that the processes end together
        return SuiteResult(entries, result.board, {})
    with distributed.local():
        pm = pm or get_plugin_manager()
        methods = resolve_methods(config.methods, pm)
        try:
            return _report(config, methods, [get_task(t, pm) for t in config.tasks], entries)
        finally:
            distributed.gather(None, group=group)


def _run_suite(config: SuiteConfig, pm, on_event, load, share: tuple[int, int] = (0, 1),
               report: bool = True) -> SuiteResult:  # fmt: skip
    pm = pm or get_plugin_manager()
    methods = resolve_methods(config.methods, pm)
    per_method = split_method_options(config.method_options, methods, pm)
    tasks = [get_task(t, pm) for t in config.tasks]
    run_opts = config.run
    load = load or (lambda name: load_model(name, device=run_opts.device, dtype=run_opts.dtype, kind=run_opts.model_kind))
    root = Path(config.output)
    _check_same_settings(root, config)
    root.mkdir(parents=True, exist_ok=True)
    _write_suite(root, config, methods, tasks, [])  # records the settings at once, should the suite be interrupted
    if config.plan_only:
        return SuiteResult([], Leaderboard(title=config.title, rows=[], runs=[]), {})
    combos = [(model, task, setting, method, seed) for model in config.models for task in tasks
              for setting in config.settings_of(task) for method in methods for seed in config.seeds]  # fmt: skip
    combos += [(model, task, i) for model in config.models for task in tasks if config.baselines
               for i in range(len(run_opts.templates or task.templates))]  # fmt: skip
    entries: list[SuiteEntry] = []
    index = -1
    for model in config.models:
        label = model_label(model)
        loaded = _ModelSlot(model, load)
        plan = [(task, setting, i == len(settings) - 1) for task in tasks for settings in [config.settings_of(task)]
                for i, setting in enumerate(settings)]  # fmt: skip
        for task, setting, last_setting in plan:
            opts = _setting_options(run_opts, setting)
            for method in methods:
                for seed in config.seeds:
                    index += 1
                    if index % share[1] != share[0]:
                        continue  # another process's run
                    out = suite_run_dir(root, label, task.name, method, seed, setting.directory)
                    entry = SuiteEntry(label, task.name, method, seed, str(out), variant=setting.directory)
                    if loaded.get() is None:
                        entry.status, entry.error = "failed", loaded.error
                        _record_failure(out, entry, loaded.exception)
                    else:
                        seed_opts = _kshot_options(opts, config.kshot, seed)
                        _run_one(entry, out, seed_opts, model, task, method, seed, per_method[method], loaded.get(), pm)
                    if config.inspect and entry.status == "ok" and _needs_inspection(out) and loaded.get() is not None:
                        _inspect_one(entry, out, loaded.get(), opts, pm, _inspect_options(config))
                    entries.append(entry)
                    if on_event:
                        on_event(entry, len(entries), len(combos))
            if not config.baselines or not last_setting:
                continue
            for i, template in enumerate((run_opts.templates or task.templates)[:1]):  # zero-shot: the first template, as is
                index += 1
                if index % share[1] != share[0]:
                    continue
                seed = config.seeds[0]
                out = suite_run_dir(root, label, task.name, ZERO_SHOT_DIR, seed, variant_dir(None, None, i))
                entry = SuiteEntry(label, task.name, ZERO_SHOT, seed, str(out))
                if loaded.get() is None:
                    entry.status, entry.error = "failed", loaded.error
                    _record_failure(out, entry, loaded.exception)
                else:
                    opts = dataclasses.replace(_kshot_options(run_opts, config.kshot, seed), templates=[template])
                    _run_one(entry, out, opts, model, task, "manual", seed, {}, loaded.get(), pm)
                entries.append(entry)
                if on_event:
                    on_event(entry, len(entries), len(combos))
        loaded.release()
    if not report:
        return SuiteResult(entries, Leaderboard(title=config.title, rows=[], runs=[]), {})
    if config.inspect:
        _inspect_collected(config.collect, load, run_opts, pm, _inspect_options(config))
    return _report(config, methods, tasks, entries)


def _report(config: SuiteConfig, methods: list[str], tasks: list, entries: list[SuiteEntry]) -> SuiteResult:
    """The suite's end: ``suite.json`` with every entry, then the leaderboard of its runs (and collected ones)."""
    root = Path(config.output)
    meta = _write_suite(root, config, methods, tasks, entries)
    board = build_leaderboard(collect_runs([root, *config.collect]), title=config.title, meta=meta,
                              baselines=config.baselines)  # fmt: skip
    return SuiteResult(entries, board, write_reports(board, root))


def _write_suite(root: Path, config: SuiteConfig, methods: list[str], tasks: list, entries: list[SuiteEntry]) -> dict:
    """Write ``suite.json`` (settings, combinations, entries so far); returns the report metadata."""
    meta = {"command": config.meta.get("command"), "machine": machine_description(),
            "generated": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "promptopt": _version(), "settings": _settings(config), **{k: v for k, v in config.meta.items()
                                                                        if k != "command"}}  # fmt: skip
    grown = _grown(root, {"methods": methods, "tasks": [t.name for t in tasks], "seeds": config.seeds,
                          "models": [model_label(m) for m in config.models]})  # fmt: skip
    write_json(root / SUITE_FILE, {
        "schema": SUITE_SCHEMA, "schema_version": SUITE_SCHEMA_VERSION, "title": config.title, "meta": meta,
        "config": {**grown, "collect": config.collect,
                   "shots": config.shots or config.run.shots, "max_train": config.max_train or config.run.max_train,
                   "same_template": config.same_template, "kshot": config.kshot, "baselines": config.baselines},
        "entries": [dataclasses.asdict(e) for e in entries],
    })  # fmt: skip
    return meta


def _grown(root: Path, now: dict[str, list]) -> dict[str, list]:
    """The suite's methods, tasks, seeds and models: those recorded in its ``suite.json`` so far and then the new
    ones, so that a suite built up by several commands (a task at a time, say) plans and reports all of them."""
    try:
        before = read_json(root / SUITE_FILE).get("config") or {}
    except (OSError, json.JSONDecodeError):
        return now
    return {k: list(dict.fromkeys([*(before.get(k) or []), *v])) for k, v in now.items()}


def _check_same_settings(root: Path, config: SuiteConfig) -> None:
    """Finished runs are reused, so a suite directory must not mix budgets: refuse other run settings. A list of
    training-set sizes may change into another list (each size has its own run directories, so sizes can be added);
    a single size may not become a list or the other way round (the layout changes, and the runs of both layouts
    would be reported as the same rows)."""
    path = root / SUITE_FILE
    if not path.exists():
        return
    try:
        before = (read_json(path).get("meta") or {}).get("settings") or {}
    except (OSError, json.JSONDecodeError):
        return
    now = json.loads(json.dumps(_settings(config), default=str))
    sizes = {k for k in ("shots", "max_train") if "," in str(before.get(k, "")) and "," in str(now.get(k, ""))}
    changed = sorted(k for k in set(before) | set(now) if before.get(k) != now.get(k) and k not in sizes)
    if changed:
        diff = ", ".join(f"{k}: {before.get(k)!r} -> {now.get(k)!r}" for k in changed)
        raise ConfigError(f"{root} holds runs made with other settings ({diff}); its finished runs would be reused. "
                          "Use another --output, or the same settings to add methods, tasks, seeds or sizes")  # fmt: skip


def _kshot_options(run_opts: RunOptions, k: int | None, seed: int) -> RunOptions:
    """The run options of seed ``seed``: under the k-shot protocol its training and selection data are the k-shot
    split ``K-SEED`` (the seed names the split, as in LM-BFF, and seeds the method too)."""
    return run_opts if k is None else dataclasses.replace(run_opts, kshot=f"{k}-{seed}")


def _setting_options(run_opts: RunOptions, setting: Setting) -> RunOptions:
    """The shared run options with one setting's training-set size and template applied."""
    changes = {"shots": setting.shots, "max_train": setting.max_train}
    if setting.template is not None:
        changes["templates"] = [setting.template]
    return dataclasses.replace(run_opts, **changes)


class _ModelSlot:
    """A model loaded on first use and kept until released; a failed load is remembered (and reported per run)."""

    def __init__(self, name: str | None, load):
        self.name, self.load = name, load
        self.lm: LoadedModel | None = None
        self.exception: Exception | None = None

    @property
    def error(self) -> str | None:
        return None if self.exception is None else f"model {model_label(self.name)!r} failed to load: " + (
            f"{type(self.exception).__name__}: {self.exception}")  # fmt: skip

    def get(self) -> LoadedModel | None:
        if self.lm is None and self.exception is None:
            try:
                self.lm = self.load(self.name)
            except Exception as e:  # noqa: BLE001 - every run of this model fails with this message; others go on
                self.exception = e
                log.warning("%s", self.error)
        return self.lm

    def release(self) -> None:
        self.lm = None
        gc.collect()


def _run_one(entry, out, run_opts, model, task, method, seed, method_options, lm, pm) -> None:
    interrupted = out.exists() and not (out / "error.json").exists()
    if (out / "error.json").exists():
        (out / "error.json").unlink()  # a new attempt; the old error must not outlive it
    # a finished run with the same fingerprint is reused; one made with other settings runs again
    opts = dataclasses.replace(run_opts, method=method, task=str(task.path) if task.path else task.name, model=model,
                               seed=seed, output=str(out), method_options=method_options, resume=interrupted,
                               overwrite=False, reuse=True)  # fmt: skip
    start = time.perf_counter()
    try:
        entry.skipped = api_run(opts, lm=lm, pm=pm).reused
    except Exception as e:  # noqa: BLE001 - one failing run must not stop the suite; it is recorded instead
        entry.status, entry.error = "failed", f"{type(e).__name__}: {e}"
        log.warning("%s/%s/%s seed %d failed: %s", entry.model, entry.task, method, seed, entry.error)
        _record_failure(out, entry, e)
    entry.seconds = time.perf_counter() - start


def _inspect_one(entry, out, lm, run_opts, pm, options: InspectOptions | None = None) -> None:
    try:
        inspect_run(out, lm=lm, batch_size=run_opts.batch_size, pm=pm, options=options)
    except Exception as e:  # noqa: BLE001 - the run itself is fine; the report says inspection failed
        entry.inspect_error = f"{type(e).__name__}: {e}"
        log.warning("inspecting %s failed: %s", out, entry.inspect_error)


def _inspect_options(config: SuiteConfig) -> InspectOptions | None:
    """The inspection a suite runs: the full one (None), or with ``quick_inspect`` nearest tokens and projection."""
    return InspectOptions(ablate=False, lens=False, distill=False, describe=False) if config.quick_inspect else None


def _inspect_collected(dirs: list[str], load, run_opts, pm, options: InspectOptions | None = None) -> None:
    """Inspect trained prompts of collected runs that have no ``inspect.json``, loading each model once."""
    todo: dict[str, list[Path]] = {}
    for d in dirs:
        for result in sorted(Path(d).rglob("result.json")):
            if _needs_inspection(result.parent):
                model = read_json(result).get("model")
                todo.setdefault(model, []).append(result.parent)
    for model, run_dirs in todo.items():
        lm = load(None if model == DEFAULT_MODEL else model)
        for run_dir in run_dirs:
            try:
                inspect_run(run_dir, lm=lm, batch_size=run_opts.batch_size, pm=pm, options=options)
            except Exception as e:  # noqa: BLE001
                log.warning("inspecting %s failed: %s: %s", run_dir, type(e).__name__, e)
        del lm
        gc.collect()


def _version() -> str:
    from promptopt import __version__

    return __version__


# -- reading run directories ---------------------------------------------------------------------------------------


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _select_value(record: dict):
    for key in ("select", "select_score", "select_accuracy"):
        value = record.get(key)
        if isinstance(value, dict):
            value = value.get("score", value.get("accuracy"))
        if _is_number(value):
            return value
    if record.get("split") == "select" and isinstance(record.get("metrics"), dict):
        value = record["metrics"].get("score", record["metrics"].get("accuracy"))
        if _is_number(value):
            return value
    return None


STEP_KEYS = ("step", "iteration", "select_step")
LOSS_KEYS = ("loss", "train_loss", "current_loss", "gradient_loss")


def read_curves(path: str | Path, max_points: int = MAX_CURVE_POINTS) -> dict[str, list[list[float]]]:
    """Learning curves from a ``history.jsonl``.

    Typed records (:mod:`promptopt.data.history`) are read by ``kind``: ``train_step`` and ``search_iteration``
    give the loss curve, ``evaluation`` on the ``select`` split the selection curve (its ``score``). Records without
    a ``kind`` (older runs, a method's own notes) are read leniently: a record counts if it has a numeric step (``step``, ``iteration`` or ``select_step``) and a loss (``loss``,
    ``train_loss``, ``current_loss`` or ``gradient_loss``) and/or a selection score (``select`` as a number or as a
    dict with ``score``/``accuracy``, ``select_score``, or ``split == "select"`` with ``metrics``). Other records and
    unreadable lines are skipped. When a run trained several templates one after another (records naming a
    ``template``), the curves of the last one are kept. Long curves are thinned to ``max_points``.
    """
    per_template: dict = {}
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError:
        return {}
    for line in lines:
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if not isinstance(record, dict):
            continue
        kind = record.get("kind")
        if kind in ("train_step", "search_iteration", "evaluation"):
            step = record.get("step")
            loss = record.get("loss") if kind != "evaluation" else None
            metrics = record.get("metrics") if kind == "evaluation" and record.get("split") == "select" else None
            select = metrics.get("score") if isinstance(metrics, dict) else None
            if not _is_number(step) or not (_is_number(loss) or _is_number(select)):
                continue
        else:
            step = next((record[k] for k in STEP_KEYS if _is_number(record.get(k))), None)
            if step is None:
                continue
            loss = next((record[k] for k in LOSS_KEYS if _is_number(record.get(k))), None)
            select = _select_value(record)
        if loss is None and select is None:
            continue
        curves = per_template.pop(str(record.get("template")), None) or {"loss": {}, "select": {}}
        per_template[str(record.get("template"))] = curves  # re-inserted: the last template trained comes last
        if loss is not None:
            curves["loss"][step] = float(loss)
        if select is not None:
            curves["select"][step] = float(select)
    out = {}
    for name, points in (list(per_template.values())[-1] if per_template else {}).items():
        pts = [[s, v] for s, v in sorted(points.items())]
        if len(pts) > max_points:  # keep the first and last point and an even spread between
            idx = sorted({round(i * (len(pts) - 1) / (max_points - 1)) for i in range(max_points)})
            pts = [pts[i] for i in idx]
        if pts:
            out[name] = pts
    return out


def _metric_name(metrics: dict) -> str:
    score = metrics.get("score")
    for name in ("p_at_1", "accuracy", "macro_f1"):
        if name in metrics and metrics[name] == score:
            return name
    return "score"


def _display(path: Path, base: Path | None) -> str:
    if base is not None:
        try:
            return path.resolve().relative_to(base.resolve()).as_posix() or "."
        except ValueError:
            pass
    return str(path)


def _read_predictions(run_dir: Path) -> tuple[list[str], list[str], list[str]]:
    """Example ids, gold labels and predictions of the evaluation split from ``predictions.jsonl`` (rows with
    ``split == "eval"`` or no split). The id is the row's ``id``, else its ``source``, else its position; an id seen
    again gets ``#2``, ``#3``... so that every example keeps its own outcome. Unreadable lines are skipped."""
    ids: list[str] = []
    golds: list[str] = []
    preds: list[str] = []
    seen: dict[str, int] = {}
    try:
        lines = (run_dir / "predictions.jsonl").read_text(encoding="utf-8").splitlines()
    except OSError:
        return ids, golds, preds
    for pos, line in enumerate(lines):
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if not isinstance(row, dict) or row.get("split", "eval") != "eval" or "label" not in row:
            continue
        key = str(row.get("id") or row.get("source") or f"#{pos}")
        seen[key] = seen.get(key, 0) + 1
        ids.append(key if seen[key] == 1 else f"{key}#{seen[key]}")
        golds.append(str(row["label"]))
        preds.append(str(row.get("prediction")))
    return ids, golds, preds


def _flops(compute, part: str) -> float | None:
    value = compute.get(part) if isinstance(compute, dict) else None
    value = value.get("flops") if isinstance(value, dict) else None
    return float(value) if _is_number(value) else None


_TASK_TEMPLATES: dict[str, list[str] | None] = {}


def _task_templates(name: str | None) -> list[str] | None:
    """The templates of a task (registered name or spec path), or None when it cannot be found here."""
    if not name:
        return None
    if name not in _TASK_TEMPLATES:
        try:
            _TASK_TEMPLATES[name] = list(get_task(name).templates)
        except Exception:  # noqa: BLE001 - a task of another machine or plugin: the index is only a label
            _TASK_TEMPLATES[name] = None
    return _TASK_TEMPLATES[name]


def _settings_of(conf: dict) -> dict:
    """Training-set and template settings of a run from its ``config.json`` (what :class:`RunEntry` holds)."""
    data = conf.get("data") if isinstance(conf.get("data"), dict) else {}
    templates = [str(t) for t in conf.get("templates") or []]
    index = None
    if len(templates) == 1:
        known = _task_templates(conf.get("task_spec") or conf.get("task"))
        if known and templates[0] in known:
            index = known.index(templates[0])
    kshot = data.get("kshot") if isinstance(data.get("kshot"), str) else None
    shots = data.get("shots") if _is_number(data.get("shots")) else None
    if shots is None and kshot:  # a k-shot split holds K per class
        shots = int(kshot.split("-")[0])
    labels = data.get("train_labels") if isinstance(data.get("train_labels"), dict) else {}
    return {"n_train": data.get("train") if _is_number(data.get("train")) else None, "shots": shots, "kshot": kshot,
            "train_labels": {str(k): int(v) for k, v in labels.items() if _is_number(v)},
            "max_train": data.get("max_train") if _is_number(data.get("max_train")) else None,
            "templates": templates, "template_index": index}  # fmt: skip


_SOFT_SLOT = re.compile(r"\[P(?:\*\d+)?(?::[^\]]*)?\]")


def _template_used(templates: list[str], prompt_text: str) -> str:
    """The template a run used: the one it was given, else the given one its prompt is (a method that chose among
    several), or is once its soft-vector slots (``[P*20:p0]``) are taken out (a soft prompt built around one);
    empty when that cannot be told from the run directory (e.g. a search that rewrote the text)."""
    if len(templates) == 1:
        return templates[0]
    for text in (prompt_text, _SOFT_SLOT.sub("", prompt_text)):
        if text in templates:
            return text
    return ""


def _readable_prompt(run_dir: Path, text: str) -> str:
    """The prompt's text as the report shows it: in-context demonstrations (``meta["demonstrations"]`` of the saved
    prompt) named by the examples used, ``[demonstrations: SOURCE (LABEL), ...]``, in place of their rendered text."""
    try:
        used = (read_json(run_dir / "prompt" / "prompt.json").get("meta") or {}).get("demonstrations")
    except (OSError, json.JSONDecodeError, AttributeError):
        return text
    if not used or not isinstance(used, list):
        return text
    if "pool" in used[0]:  # chosen per input
        first = used[0]
        per = "per class" if first.get("per_class") else "in all"
        return (f"[demonstrations per input: {first.get('choice')}, k={first.get('k')} {per}, from "
                f"{len(first['pool'])} training examples]" + text.replace("{demonstrations}", "", 1))  # fmt: skip
    block = "".join(u.get("text", "") for u in used)
    named = ", ".join(f"{u.get('source')} ({u.get('label')})" for u in used)
    rest = text
    for u in used:  # the rendered block comes first in the text; what follows it is the template
        at = rest.find(u.get("text", ""))
        rest = rest[at + len(u.get("text", "")) :] if at >= 0 and block else rest
    return f"[demonstrations: {named}] " + rest.lstrip("\n")


def _read_config(run_dir: Path, fallback: dict | None = None) -> dict:
    try:
        conf = read_json(run_dir / "config.json")
    except (OSError, json.JSONDecodeError):
        conf = None
    return conf if isinstance(conf, dict) else (fallback or {})


def _entry_from_result(result: RunResult, run_dir: Path, base: Path | None) -> RunEntry:
    metrics = result.metrics.get("eval", {}) if isinstance(result.metrics, dict) else {}
    inspection = None
    if (run_dir / INSPECT_FILE).exists():
        try:
            inspection = read_json(run_dir / INSPECT_FILE)
        except (OSError, json.JSONDecodeError):
            inspection = None
    try:
        compute = read_json(run_dir / "result.json").get("compute")
    except (OSError, json.JSONDecodeError, AttributeError):
        compute = None
    conf = _read_config(run_dir, result.config if isinstance(result.config, dict) else None)
    settings = _settings_of(conf)
    method, kind = result.method, conf.get("method_kind") or ""
    if run_dir.parent.parent.name == ZERO_SHOT_DIR:  # a run of the suite's zero-shot baseline (one template each)
        method, kind = ZERO_SHOT, BASELINE
    named = parse_variant_dir(run_dir.parent.name) if re.fullmatch(r"seed\d+", run_dir.name) else None
    for key, value in (named or {}).items():  # a suite's run directory names its setting (runs before data.shots)
        if settings[key] is None:
            settings[key] = value
    ids, golds, preds = _read_predictions(run_dir)
    prompt_text = _readable_prompt(run_dir, result.prompt_text or "")
    return RunEntry(
        model=result.model, task=result.task, method=method, kind=kind, seed=int(result.seed), status=result.status,
        error=result.error, metric=_metric_name(metrics), score=metrics.get("score"),
        select_score=(result.select_metrics or {}).get("score"), n_eval=int(metrics.get("n", 0)),
        trainable_parameters=int(result.trainable_parameters or 0), train_seconds=float(result.train_seconds or 0),
        eval_seconds=float(result.eval_seconds or 0),
        eval_examples_per_second=float(result.eval_examples_per_second or 0),
        peak_memory_mb=float(result.peak_memory_mb or 0), prompt_text=prompt_text,
        run_dir=_display(run_dir, base), curves=read_curves(run_dir / "history.jsonl"), inspection=inspection,
        ids=ids, golds=golds, preds=preds, template=_template_used(settings["templates"], prompt_text),
        train_flops=_flops(compute, "train"), eval_flops=_flops(compute, "eval"), **settings,
    )  # fmt: skip


def _entry_from_error(run_dir: Path, base: Path | None) -> RunEntry | None:
    """A failed run: identity from error.json (the suite writes it there), else config.json, else the path."""
    try:
        error = read_json(run_dir / "error.json")
    except (OSError, json.JSONDecodeError):
        error = {}
    ids = {k: error.get(k) for k in ("model", "task", "method", "seed")}
    if any(v is None for v in ids.values()) and (run_dir / "config.json").exists():
        try:
            conf = read_json(run_dir / "config.json")
            ids = {k: conf.get(k) if ids[k] is None else ids[k] for k in ids}
        except (OSError, json.JSONDecodeError):
            pass
    parts = list(run_dir.parts)
    conf = _read_config(run_dir)
    settings = _settings_of(conf) if conf else {}
    variant = parse_variant_dir(parts[-2]) if len(parts) >= 2 and re.fullmatch(r"seed\d+", parts[-1]) else None
    if variant is not None:
        del parts[-2]
        if not conf:
            settings = variant
    if any(v is None for v in ids.values()) and len(parts) >= 4 and re.fullmatch(r"seed\d+", parts[-1]):
        guess = {"model": parts[-4], "task": parts[-3], "method": parts[-2], "seed": int(parts[-1][4:])}
        ids = {k: guess[k] if ids[k] is None else ids[k] for k in ids}
    if any(v is None for v in ids.values()):
        log.warning("%s: a failed run that names no method/task/model/seed; left out of the report", run_dir)
        return None
    return RunEntry(model=str(ids["model"]), task=str(ids["task"]), method=str(ids["method"]), seed=int(ids["seed"]),
                    status="failed", error=error.get("error") or "failed (no message)",
                    run_dir=_display(run_dir, base), **settings)  # fmt: skip


def collect_runs(roots: list[str | Path]) -> list[RunEntry]:
    """Every run under ``roots``: finished ones (``result.json``) and failed ones (``error.json`` without a
    result). Run directories are shown relative to the first root; a directory found twice counts once."""
    base = Path(roots[0]) if roots else None
    seen: set[Path] = set()
    out: list[RunEntry] = []
    for root in roots:
        root = Path(root)
        for marker in sorted([*root.rglob("result.json"), *root.rglob("error.json")]):
            run_dir = marker.parent
            key = run_dir.resolve()
            if key in seen:
                continue
            if marker.name == "error.json" and (run_dir / "result.json").exists():
                continue
            seen.add(key)
            if marker.name == "result.json":
                try:
                    result = RunResult.load(run_dir)
                except (OSError, json.JSONDecodeError, TypeError) as e:
                    raise PromptoptError(f"{marker}: not a readable run result ({e})") from None
                if isinstance((result.config or {}).get("tasks"), list) and any(
                        p.parent != run_dir for p in run_dir.rglob("result.json")):
                    continue  # a multi-task or continual run's summary: the run directories of its tasks are the rows
                out.append(_entry_from_result(result, run_dir, base))
            else:
                entry = _entry_from_error(run_dir, base)
                if entry is not None:
                    out.append(entry)
    return out


def load_board(dirs: list[str | Path], title: str | None = None) -> Leaderboard:
    """A leaderboard of every run under ``dirs``; title and metadata from the first one's ``suite.json``."""
    meta: dict = {}
    suite_title = None
    baselines = False
    suite_file = Path(dirs[0]) / SUITE_FILE if dirs else None
    if suite_file is not None and suite_file.exists():
        suite = read_json(suite_file)
        meta, suite_title = suite.get("meta") or {}, suite.get("title")
        baselines = bool((suite.get("config") or {}).get("baselines"))
    runs = collect_runs(list(dirs))
    progress = suite_progress(dirs)
    if progress is not None and progress[0] < progress[1]:
        meta = {**meta, "progress": f"incomplete: {progress[0]} of the {progress[1]} planned runs have finished; "
                                    "the rows are of those runs only"}  # fmt: skip
    return build_leaderboard(runs, title=title or suite_title or "promptopt leaderboard", meta=meta,
                             baselines=baselines)  # fmt: skip


def suite_progress(dirs: list[str | Path]) -> tuple[int, int] | None:
    """``(finished, planned)`` runs over the suites among ``dirs`` (folders with a ``suite.json``): planned is
    models x tasks x training-set sizes x methods x seeds, plus one zero-shot row per task and model where the suite
    has baselines; finished counts the runs with a ``result.json`` under each suite. None if no DIR is a suite."""
    finished = planned = 0
    found = False
    for d in dirs:
        suite_file = Path(d) / SUITE_FILE
        if not suite_file.exists():
            continue
        found = True
        conf = read_json(suite_file).get("config") or {}
        sizes = [len(v) for v in (conf.get("shots"), conf.get("max_train")) if isinstance(v, list) and v]
        settings = math.prod(sizes) if sizes else 1
        per_task = settings * len(conf.get("methods") or []) * len(conf.get("seeds") or []) + bool(conf.get("baselines"))
        planned += len(conf.get("models") or [None]) * len(conf.get("tasks") or []) * per_task
        finished += sum(1 for _ in Path(d).rglob("result.json"))
    return (finished, planned) if found else None


def write_reports(board: Leaderboard, directory: str | Path, name: str = "report",
                  formats=REPORT_FORMATS) -> dict[str, Path]:  # fmt: skip
    """Write ``name.md``, ``name.html``, ``name.json`` and ``name.csv`` into ``directory``; returns their paths."""
    paths = {}
    for fmt in formats:
        path = Path(directory) / f"{name}.{fmt}"
        write_text(path, render(board, fmt))
        paths[fmt] = path
    return paths
