"""The evaluation protocol: what a method is handed, paired evaluation samples, compute accounting, budgets and
provenance (fingerprints refuse a resume with other settings)."""

from __future__ import annotations

import dataclasses
import json
import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file

import promptopt
from promptopt import hookimpl
from promptopt.data.tasks import Example
from promptopt.engine.compute import compute_counter
from promptopt.engine.inputs import VectorLayout
from promptopt.engine.scoring import Scorer
from promptopt.engine.train import PromptVectors, TrainConfig, fit
from promptopt.errors import ConfigError, PromptoptError
from promptopt.pipeline.methods import OptimizeResult, PromptOptimizer
from promptopt.plugins import get_task, make_plugin_manager
from promptopt.sdk import Prompt

from conftest import TINY_REVIEWS

TASK = str(TINY_REVIEWS / "task.toml")


# -- the method never holds the evaluation split -------------------------------------------------------------------


def _walk(obj, found: list, seen: set, depth: int = 0) -> None:
    """Every Example and string reachable from ``obj`` (not through the model, tensors or the tokenizer)."""
    if id(obj) in seen or depth > 12 or isinstance(obj, (torch.nn.Module, torch.Tensor, type)):
        return
    seen.add(id(obj))
    if isinstance(obj, Example):
        found.append(obj)
    elif isinstance(obj, str):
        found.append(obj)
    elif isinstance(obj, dict):
        for k, v in obj.items():
            _walk(k, found, seen, depth + 1)
            _walk(v, found, seen, depth + 1)
    elif isinstance(obj, (list, tuple, set, frozenset)):
        for v in obj:
            _walk(v, found, seen, depth + 1)
    elif dataclasses.is_dataclass(obj) or hasattr(obj, "__dict__"):
        if "tokenizer" in type(obj).__name__.lower() or type(obj).__module__.startswith(("pluggy", "transformers")):
            return
        for v in vars(obj).values():
            _walk(v, found, seen, depth + 1)


class Probe(PromptOptimizer):
    """Looks for the evaluation examples in everything it is handed, and tries to read every split."""

    name = "probe"
    needs_training_data = True
    seen: dict = {}

    def optimize(self, run):
        found: list = []
        _walk(run, found, set())
        Probe.seen["items"] = found
        readable, refused = [], []
        for task in (run.task, run.scorer.task):
            for split in task.available_splits:
                try:
                    task.load_split(split)
                    readable.append(split)
                except PromptoptError as e:
                    refused.append((split, str(e)))
        Probe.seen["readable"], Probe.seen["refused"] = readable, refused
        return OptimizeResult(prompt=Prompt.from_template(run.templates[0]))


class ProbePlugin:
    @hookimpl
    def register_optimizers(self, register):
        register(Probe)


def test_a_method_never_holds_the_evaluation_examples(tiny_lms, tmp_path):
    result = promptopt.run(method="probe", task=TASK, lm=tiny_lms["causal"], output=str(tmp_path / "run"),
                           progress=False, pm=make_plugin_manager(extra_plugins=[ProbePlugin()]))  # fmt: skip
    test = get_task(TASK).load_split("test")
    texts = {ex.inputs["text"] for ex in test} - {ex.inputs["text"] for ex in get_task(TASK).load_split("train")}
    examples = [x for x in Probe.seen["items"] if isinstance(x, Example)]
    strings = [x for x in Probe.seen["items"] if isinstance(x, str)]
    assert examples, "the probe must see the train and select examples"
    assert not [ex for ex in examples if ex.inputs.get("text") in texts]
    assert not [s for s in strings if any(t in s for t in texts)]
    assert Probe.seen["readable"] == ["train", "dev"] * 2
    assert [s for s, _ in Probe.seen["refused"]] == ["test", "test"]
    assert "reported split" in Probe.seen["refused"][0][1]
    assert result.metrics["eval"]["n"] == len(test)  # and the run still scored the prompt on all of it


def test_selecting_on_the_reported_split_is_refused(tiny_lms, tmp_path):
    with pytest.raises(ConfigError, match="is the reported split"):
        promptopt.run(method="manual", task=TASK, lm=tiny_lms["causal"], output=str(tmp_path / "a"),
                      select_split="dev", eval_split="dev", progress=False)  # fmt: skip
    with pytest.raises(ConfigError, match="cannot be the reported split"):
        promptopt.run(method="soft", task=TASK, lm=tiny_lms["causal"], output=str(tmp_path / "b"),
                      select_split="dev", eval_split="train", progress=False)  # fmt: skip


def _eval_ids(run_dir) -> list[str]:
    rows = [json.loads(line) for line in (run_dir / "predictions.jsonl").read_text().splitlines()]
    return sorted(r["id"] for r in rows if r["split"] == "eval")


def test_every_method_and_seed_is_scored_on_the_same_evaluation_examples(tiny_lms, tmp_path):
    runs = []
    for method, seed in (("manual", 0), ("manual", 1), ("soft", 2)):
        out = tmp_path / f"{method}{seed}"
        promptopt.run(method=method, task=TASK, lm=tiny_lms["causal"], output=str(out), seed=seed, max_eval=5,
                      max_train=8, train={"steps": 1, "batch_size": 4}, method_options={"n_tokens": 2} if method == "soft" else {},
                      progress=False)  # fmt: skip
        runs.append(out)
    ids = [_eval_ids(r) for r in runs]
    assert len(ids[0]) == 5 and ids[0] == ids[1] == ids[2]
    digests = {json.loads((r / "config.json").read_text())["fingerprint"]["data"]["eval"] for r in runs}
    assert len(digests) == 1
    selects = {json.loads((r / "config.json").read_text())["data"]["ids"]["select"] for r in runs}
    assert len(selects) == 3  # the selection sample is the method's and follows --seed


# -- compute accounting --------------------------------------------------------------------------------------------


def _body_and_head(lm):
    body = getattr(lm.model, lm.model.base_model_prefix)
    lookups = {id(p) for m in body.modules() if isinstance(m, torch.nn.Embedding) for p in m.parameters()}
    n_body = sum(p.numel() for p in body.parameters() if id(p) not in lookups)
    return n_body, lm.model.get_output_embeddings().weight.numel()


def test_compute_counts_the_positions_of_one_soft_training_step(tiny_lms, reviews_task):
    lm = tiny_lms["causal"]
    scorer = Scorer(lm, reviews_task, share_prefix=False)
    prompt = Prompt.from_template("[P*3:p0]Review: {text}\nSentiment:{answer}")
    examples = reviews_task.load_split("train")[:4]
    params = PromptVectors({"p0": torch.randn(3, lm.hidden_size) * 0.1})
    counter = compute_counter(lm)
    before = counter.snapshot()
    fit(params, examples, TrainConfig(steps=1, batch_size=4, group_by_length=0), scorer=scorer, prompt=prompt, seed=0)
    spent = counter.since(before)
    layout = VectorLayout.build(prompt, {"p0": torch.zeros(3, 1)})
    encs = [scorer.encoder.encode(prompt, ex.inputs, layout) for ex in examples]
    length = max(len(e.ids) for e in encs)
    reads = sum(len(e.read) for e in encs)
    # by hand: one padded batch of 4 forward and backward (the input gradient), the head at each read position
    assert (spent.forward_positions, spent.backward_positions) == (4 * length, 4 * length)
    assert (spent.head_positions, spent.head_backward_positions) == (reads, reads)
    n_body, n_head = _body_and_head(lm)
    assert spent.flops == pytest.approx(2 * n_body * 8 * length + 2 * n_head * 2 * reads)
    # with the shared prefix (the vectors and "Review:" once, then each example on their keys/values) the backward
    # pass still runs through every position: the examples attend to the trained vectors
    shared = Scorer(lm, reviews_task)
    same = [ex for ex in reviews_task.load_split("train") if len(shared.encoder.encode(prompt, ex.inputs, layout).ids)
            == length][:4] or examples  # fmt: skip
    before = counter.snapshot()
    fit(params, same, TrainConfig(steps=1, batch_size=4, group_by_length=0), scorer=shared, prompt=prompt, seed=0)
    spent = counter.since(before)
    assert spent.backward_positions == spent.forward_positions > 0


def test_compute_of_one_autoprompt_iteration_matches_the_model_calls_it_made(tiny_lms, tmp_path, monkeypatch):
    lm = tiny_lms["causal"]
    Scorer(lm, get_task(TASK))  # the once-per-model self-check runs before the spy is in place
    body = getattr(lm.model, lm.model.base_model_prefix)
    calls = []
    original = body.forward

    def spy(*args, **kwargs):  # an independent record of every body call: (batch, length, gradient into the input)
        x = kwargs.get("inputs_embeds")
        calls.append((x.shape[0], x.shape[1], torch.is_grad_enabled() and x.requires_grad))
        return original(*args, **kwargs)

    monkeypatch.setattr(body, "forward", spy)
    promptopt.run(method="autoprompt", task=TASK, lm=lm, output=str(tmp_path / "run"), max_train=8, max_eval=4,
                  progress=False, train={"steps": 1}, method_options={"candidates": 3, "batch_size": 4})  # fmt: skip
    result = json.loads((tmp_path / "run" / "result.json").read_text())
    # the run's train phase = the calls before the final evaluation's; count the eval calls from the eval split size
    total_fwd = sum(b * n for b, n, _ in calls)
    total_bwd = sum(b * n for b, n, g in calls if g)
    spent = result["compute"]
    assert spent["train"]["forward_positions"] + spent["eval"]["forward_positions"] == total_fwd
    assert spent["train"]["backward_positions"] == total_bwd > 0  # the gradient pass of the iteration
    assert spent["eval"]["backward_positions"] == 0
    n_body, n_head = _body_and_head(lm)
    train = spent["train"]
    assert train["flops"] == pytest.approx(2 * n_body * (train["forward_positions"] + train["backward_positions"])
                                           + 2 * n_head * (train["head_positions"] + train["head_backward_positions"]))


class FlopsAtEachStep:
    def __init__(self):
        self.start, self.after = 0.0, []

    @hookimpl
    def run_start(self, run):
        self.start = run.compute.flops

    @hookimpl
    def training_step(self, run, step, loss, lr):
        self.after.append(run.compute.flops - self.start)


@pytest.mark.parametrize("method", ["soft", "autoprompt"])
def test_a_compute_budget_stops_training_and_search_within_one_step(tiny_lms, tmp_path, method):
    lm = tiny_lms["causal"]
    options = {"n_tokens": 2} if method == "soft" else {"candidates": 3, "select_every": 0}
    train = {"steps": 40, "batch_size": 4, "eval_every": 0}
    probe = FlopsAtEachStep()
    promptopt.run(method=method, task=TASK, lm=lm, output=str(tmp_path / "free"), max_train=8, max_eval=4,
                  progress=False, train={**train, "steps": 2}, method_options=options,
                  pm=make_plugin_manager(extra_plugins=[probe]))  # fmt: skip
    budget = probe.after[0] * 3.5  # about three and a half steps (selection scoring included)
    probe = FlopsAtEachStep()
    result = promptopt.run(method=method, task=TASK, lm=lm, output=str(tmp_path / "capped"), max_train=8, max_eval=4,
                           progress=False, train=train, method_options=options, budget_flops=budget,
                           pm=make_plugin_manager(extra_plugins=[probe]))  # fmt: skip
    assert result.budget_spent and 2 <= len(probe.after) < 40
    assert probe.after[-2] < budget <= probe.after[-1]  # it stopped at the first step that spent the budget
    assert result.compute["train"]["flops"] >= budget
    assert json.loads((tmp_path / "capped" / "config.json").read_text())["budget_flops"] == budget


# -- provenance ----------------------------------------------------------------------------------------------------


def _soft(tmp_path, lm=None, model=None, **kwargs):
    args = dict(method="soft", task=TASK, output=str(tmp_path / "run"), max_train=8, max_eval=4, progress=False,
                train={"steps": 2, "batch_size": 4}, method_options={"n_tokens": 2})  # fmt: skip
    return promptopt.run(**{**args, **kwargs}, lm=lm, model=model)


def test_resume_refuses_another_template_or_label_words_naming_the_field(tiny_lms, tmp_path):
    lm = tiny_lms["causal"]
    _soft(tmp_path, lm)
    with pytest.raises(ConfigError, match=r"cannot resume: field templates was"):
        _soft(tmp_path, lm, templates=["[P*2]{text} All in all:{answer}"], resume=True)
    spec = tmp_path / "task.toml"
    text = (TINY_REVIEWS / "task.toml").read_text().replace("{spec_dir}", str(TINY_REVIEWS))
    spec.write_text(text.replace('positive = ["positive"]', 'positive = ["good"]'))
    assert spec.read_text() != text
    with pytest.raises(ConfigError, match=r"cannot resume: field label_words.positive was"):
        _soft(tmp_path, lm, task=str(spec), resume=True)
    again = _soft(tmp_path, lm, resume=True, train={"steps": 2, "batch_size": 4, "eval_every": 1})  # resume-free
    assert again.status == "ok"


def test_resume_refuses_changed_weights_and_a_suite_reruns_a_changed_run(tiny_model_dirs, tmp_path):
    model = tmp_path / "model"
    shutil.copytree(tiny_model_dirs["causal"], model)
    first = _soft(tmp_path, model=str(model))
    assert first.config["fingerprint"]["model"]["weights"].startswith("sha256:")
    reused = _soft(tmp_path, model=str(model), reuse=True)
    assert reused.reused and reused.metrics == first.metrics
    weights = model / "model.safetensors"
    tensors = load_file(str(weights))
    name = next(k for k in tensors if "layers.0" in k)
    tensors[name] = tensors[name] + 0.5
    save_file(tensors, str(weights), metadata={"format": "pt"})
    with pytest.raises(ConfigError, match=r"cannot resume: field model.weights was"):
        _soft(tmp_path, model=str(model), resume=True)
    rerun = _soft(tmp_path, model=str(model), reuse=True)
    assert not rerun.reused and rerun.config["fingerprint"]["model"]["weights"] != first.config["fingerprint"]["model"]["weights"]
