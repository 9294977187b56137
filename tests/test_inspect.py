"""Inspecting prompts: nearest tokens of soft vectors, norms, the projected prompt's score; hard prompts' ids."""

from __future__ import annotations

import pytest
import torch

from promptopt.pipeline.runner import sample
from promptopt.engine.scoring import Scorer
from promptopt.interpret.inspection import Inspection, inspect_prompt, inspect_run, nearest_tokens, project, rescoring_examples
from promptopt.data.files import read_json, write_json
from promptopt.data.prompt import Prompt, SegmentKind


def soft_prompt_from_tokens(lm, ids, noise: float = 0.0) -> Prompt:
    weight = lm.embeddings.weight.detach()
    values = weight[ids].clone()
    if noise:
        values += noise * torch.randn(values.shape, generator=torch.Generator().manual_seed(0))
    return Prompt.from_template("[P*3] {text} It was{answer}").with_vectors({"p0": values})


def test_vectors_equal_to_token_embeddings_project_to_those_tokens_and_score_the_same(tiny_lm, reviews_task):
    ids = [7, 42, 99]
    prompt = soft_prompt_from_tokens(tiny_lm, ids)
    examples = reviews_task.load_split("dev")[:8]
    result = inspect_prompt(prompt, tiny_lm, Scorer(tiny_lm, reviews_task), examples, split="dev")
    vectors = result.segments[0].vectors
    assert [v.nearest[0].id for v in vectors] == ids
    assert all(v.nearest[0].cosine == pytest.approx(1.0, abs=1e-4) for v in vectors)
    assert result.soft_score == result.projected_score and result.gap == 0.0
    assert (result.split, result.n, result.metric) == ("dev", 8, "accuracy")
    decoded = tiny_lm.tokenizer.decode(ids)
    assert result.projected_text == decoded + " {text} It was{answer}"


def test_each_vector_has_its_norm_and_five_nearest_tokens_by_cosine(tiny_lm):
    prompt = soft_prompt_from_tokens(tiny_lm, [3, 4, 5], noise=0.5)
    result = inspect_prompt(prompt, tiny_lm)
    values = prompt.vectors["p0"]
    weight = tiny_lm.embeddings.weight.detach()
    for i, v in enumerate(result.segments[0].vectors):
        assert v.norm == pytest.approx(float(values[i].norm()), abs=1e-3)
        cos = torch.nn.functional.cosine_similarity(values[i].unsqueeze(0), weight, dim=-1)
        assert [n.id for n in v.nearest] == cos.topk(5).indices.tolist()
        assert [n.cosine for n in v.nearest] == sorted((n.cosine for n in v.nearest), reverse=True)
        assert v.nearest[0].token == tiny_lm.tokenizer.decode([v.nearest[0].id])
    assert result.soft_score is None  # no examples given: nothing re-scored
    assert result.embedding_norm_mean == pytest.approx(float(weight.norm(dim=-1).mean()), abs=1e-3)


def test_projection_turns_vector_segments_into_token_segments(tiny_lms):
    lm = tiny_lms["causal"]
    prompt = soft_prompt_from_tokens(lm, [10, 11, 12], noise=0.01)
    projected = project(prompt, lm)
    assert not projected.segments_of(SegmentKind.VECTORS) and not projected.vectors
    _, ids = nearest_tokens(prompt.vectors["p0"], lm.embeddings.weight, 1)
    assert projected.segments_of(SegmentKind.TOKENS)[0].ids == tuple(ids[:, 0].tolist())


def test_hard_prompt_inspection_gives_text_and_token_ids_without_rescoring(tiny_lms):
    lm = tiny_lms["causal"]
    prompt = Prompt.from_template("Review: {text} [T*2] It was{answer}").with_tokens("t0", [21, 22])
    result = inspect_prompt(prompt, lm)
    kinds = [(s.kind, s.name) for s in result.segments]
    assert kinds == [("text", ""), ("field", "text"), ("text", ""), ("tokens", "t0"), ("text", ""), ("answer", "")]
    assert result.segments[0].ids == lm.tokenizer("Review: ", add_special_tokens=False)["input_ids"]
    assert result.segments[3].ids == [21, 22] and result.segments[3].text == lm.tokenizer.decode([21, 22])
    assert result.projected_text is None and result.soft_score is None and not result.has_soft


def write_run_dir(tmp_path, lm, model_name: str, seed: int = 3, select: int = 8):
    run_dir = tmp_path / "run"
    soft_prompt_from_tokens(lm, [7, 8, 9], noise=0.2).save(run_dir / "prompt")
    write_json(run_dir / "config.json", {"method": "fixture", "task": "tiny-reviews", "model": model_name,
                                         "seed": seed, "data": {"select_split": "dev", "select": select}})  # fmt: skip
    return run_dir


def test_inspect_run_rescores_on_the_runs_selection_examples_and_writes_inspect_json(tmp_path, tiny_lms, reviews_task):
    lm = tiny_lms["causal"]
    run_dir = write_run_dir(tmp_path, lm, lm.name)
    split, examples = rescoring_examples(reviews_task, read_json(run_dir / "config.json"))
    assert split == "dev" and examples == sample(reviews_task.load_split("dev"), 8, 3, "select")
    result = inspect_run(run_dir, lm=lm)
    assert (result.split, result.n, result.method, result.seed) == ("dev", 8, "fixture", 3)
    assert 0.0 <= result.soft_score <= 1.0 and 0.0 <= result.projected_score <= 1.0
    assert Inspection.from_json(read_json(run_dir / "inspect.json")) == result


def test_inspect_command_prints_nearest_tokens_and_the_gap(tmp_path, tiny_lms, tiny_model_dirs):
    from click.testing import CliRunner

    from promptopt.cli import cli

    run_dir = write_run_dir(tmp_path, tiny_lms["causal"], str(tiny_model_dirs["causal"]))
    result = CliRunner().invoke(cli, ["inspect", str(run_dir), "--device", "cpu", "--top-k", "3"])
    assert result.exit_code == 0, result.output
    assert "vectors p0: 3 vectors" in result.output and "projected:" in result.output and "gap" in result.output
    assert (run_dir / "inspect.json").exists()
    bad = CliRunner().invoke(cli, ["inspect", str(tmp_path)])
    assert bad.exit_code == 2 and "not a run directory" in bad.output


def test_full_inspection_round_trips_through_json_and_saves_the_readable_prompt(tmp_path, tiny_lms, reviews_task):
    from promptopt.interpret.inspection import INSPECT_SCHEMA_VERSION, InspectOptions

    lm = tiny_lms["causal"]
    run_dir = write_run_dir(tmp_path, lm, lm.name)
    write_json(run_dir / "config.json", {**read_json(run_dir / "config.json"),
                                         "train": {"steps": 2, "batch_size": 4, "lr": 0.01, "eval_every": 0}})  # fmt: skip
    options = InspectOptions(distill_steps=2, distill_candidates=4, distill_train=8, wayward=True, wayward_steps=2,
                             eval_split="test")  # fmt: skip
    result = inspect_run(run_dir, lm=lm, options=options)
    assert result.schema_version == INSPECT_SCHEMA_VERSION == 2
    assert len(result.ablations) == 3 * 2 and {a.mode for a in result.ablations} == {"remove", "mean"}
    assert {(r.index, r.layer) for r in result.lens} == {(i, layer) for i in range(3) for layer in (1, 2)}
    assert result.readable is not None and result.readable.score >= result.projected_score
    assert result.wayward is not None and result.wayward.steps == 2 and result.wayward.sentence
    assert isinstance(result.self_description, str)
    assert result.eval_split == "test" and result.eval_n == 60 and set(result.eval_scores) == {"soft", "projected", "readable"}
    stored = read_json(run_dir / "inspect.json")
    assert Inspection.from_json(stored) == result
    assert Inspection.from_json(result.to_json()).to_json() == stored
    readable = Prompt.load(run_dir / "readable_prompt")
    assert not readable.segments_of(SegmentKind.VECTORS) and readable.text(lm.tokenizer) == result.readable.text
    assert Scorer(lm, reviews_task).evaluate(readable, reviews_task.load_split("test")).score == result.eval_scores["readable"]


def test_version_one_records_are_read_and_unknown_versions_refused(tmp_path, tiny_lms):
    from promptopt.errors import PromptoptError

    lm = tiny_lms["causal"]
    old = inspect_prompt(soft_prompt_from_tokens(lm, [7, 8, 9]), lm).to_json()
    for key in ("ablations", "lens", "lens_n", "readable", "self_description", "wayward", "eval_split", "eval_n",
                "eval_scores", "notes"):  # fmt: skip
        old.pop(key)
    old["schema_version"] = 1
    read = Inspection.from_json(old)
    assert read.schema_version == 1 and read.ablations == [] and read.readable is None and read.segments[0].vectors
    with pytest.raises(PromptoptError, match="not a promptopt inspection"):
        Inspection.from_json({**old, "schema_version": 3})


def test_inspect_command_options_and_json(tmp_path, tiny_lms, tiny_model_dirs):
    from click.testing import CliRunner

    from promptopt.cli import cli

    run_dir = write_run_dir(tmp_path, tiny_lms["causal"], str(tiny_model_dirs["causal"]))
    args = ["inspect", str(run_dir), "--device", "cpu", "--distill-steps", "1", "--distill-train", "8"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    for words in ("lens L1", "ablation (remove)", "ablation (mean)", "readable:", "remaining gap", "self-description"):
        assert words in result.output
    as_json = CliRunner().invoke(cli, [*args, "--json", "--no-ablate", "--no-lens", "--no-distill", "--no-describe"])
    assert as_json.exit_code == 0, as_json.output
    obj = __import__("json").loads(as_json.stdout)
    assert obj["ablations"] == [] and obj["lens"] == [] and obj["readable"] is None and obj["self_description"] is None
    bad = CliRunner().invoke(cli, [*args, "--lens-layers", "1,x"])
    assert bad.exit_code == 2 and "--lens-layers" in bad.output
    bad = CliRunner().invoke(cli, [*args, "--ablation", "zero"])
    assert bad.exit_code == 2 and "ablation_modes" in bad.output
    one = CliRunner().invoke(cli, [*args, "--json", "--ablation", "mean", "--no-distill"])
    assert {a["mode"] for a in __import__("json").loads(one.stdout)["ablations"]} == {"mean"}
    bad = CliRunner().invoke(cli, [*args, "--lens-layers", "9"])
    assert bad.exit_code == 2 and "not in 0..2" in bad.output


def test_a_ptuning_run_is_inspected_like_a_soft_one(tmp_path, tiny_lms, reviews_task):
    """P-tuning saves the encoder's output as plain vectors: two soft segments (around the input), each inspected."""
    import promptopt
    from promptopt.interpret.inspection import InspectOptions

    lm = tiny_lms["causal"]
    promptopt.run(method="ptuning", task=str(reviews_task.path), lm=lm, max_train=16, max_eval=8, progress=False,
                  output=str(tmp_path / "run"), method_options={"n_tokens": 4},
                  train={"steps": 2, "batch_size": 4, "lr": 0.01, "eval_every": 0, "checkpoint_every": 0})  # fmt: skip
    result = inspect_run(tmp_path / "run", lm=lm, options=InspectOptions(distill_steps=1, distill_train=8))
    assert [s.name for s in result.segments if s.kind == "vectors"] == ["p0", "p1"]
    assert {(a.segment, a.index) for a in result.ablations} == {(n, i) for n in ("p0", "p1") for i in range(2)}
    assert {(r.segment, r.index) for r in result.lens} == {(n, i) for n in ("p0", "p1") for i in range(2)}
    assert set(result.readable.tokens) == {"p0", "p1"} and result.readable.score >= result.projected_score


def test_the_readable_prompt_is_never_chosen_on_the_reported_split(tiny_lms, tmp_path, reviews_task):
    import promptopt
    from promptopt.errors import ConfigError

    out = tmp_path / "run"
    promptopt.run(method="soft", task=str(reviews_task.path), lm=tiny_lms["causal"], output=str(out), max_train=8,
                  max_eval=4, eval_split="dev", select_split="holdout:8", progress=False,
                  train={"steps": 1, "batch_size": 4}, method_options={"n_tokens": 2})  # fmt: skip
    with pytest.raises(ConfigError, match="is the run's reported split"):
        inspect_run(out, lm=tiny_lms["causal"], split="dev", write=False)
