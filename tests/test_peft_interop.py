"""PEFT interop: an exported prompt loads with PeftModel.from_pretrained and gives our logits; import goes back."""

from __future__ import annotations

import json

import pytest
import torch
from click.testing import CliRunner

from promptopt.cli import cli
from promptopt.engine import Scorer
from promptopt.errors import PromptoptError
from promptopt.interop.peft import export_peft, import_peft
from promptopt.data.prompt import Prompt

peft = pytest.importorskip("peft")

TEMPLATE = "[P*4]Review: {text}\nSentiment:{answer}"


def saved_prompt(lm, directory, model_dir, template=TEMPLATE):
    vectors = torch.randn(4, lm.hidden_size, generator=torch.Generator().manual_seed(1)) * 0.5
    return Prompt.from_template(template, vectors={"p0": vectors}, meta={"model": str(model_dir)}).save(directory)


def peft_model(model_dir, adapter_dir):
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(str(model_dir))
    return peft.PeftModel.from_pretrained(base, str(adapter_dir)).eval()


def assert_same_logits(lm, reviews_task, prompt, model):
    """For each example: PEFT's logits at the last position == our scorer's, and at every position == ours."""
    scorer = Scorer(lm, reviews_task)
    examples = reviews_task.load_split("dev")[:3]
    ours = scorer.vocab_logprobs(prompt, examples).detach()
    for i, ex in enumerate(examples):
        text = "Review: " + ex.inputs["text"] + "\nSentiment:"
        ids = lm.tokenizer(text, add_special_tokens=False, return_tensors="pt")["input_ids"]
        with torch.no_grad():
            theirs = model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits[0].float()
            embeds = torch.cat([prompt.vectors["p0"], lm.embeddings(ids)[0]]).unsqueeze(0)
            full = lm.model(inputs_embeds=embeds).logits[0].float()
        assert theirs.shape[0] == 4 + ids.shape[1]
        assert torch.allclose(theirs, full, atol=1e-5, rtol=0)
        assert torch.allclose(torch.log_softmax(theirs[-1], -1), ours[i], atol=1e-5, rtol=0)


def test_exported_prompt_gives_the_same_logits_under_peft(tiny_lms, tiny_model_dirs, reviews_task, tmp_path):
    lm = tiny_lms["causal"]
    saved_prompt(lm, tmp_path / "prompt", tiny_model_dirs["causal"])
    export_peft(tmp_path / "prompt", tmp_path / "adapter")
    config = json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())
    assert config["peft_type"] == "PROMPT_TUNING" and config["num_virtual_tokens"] == 4
    assert_same_logits(lm, reviews_task, Prompt.load(tmp_path / "prompt"), peft_model(tiny_model_dirs["causal"], tmp_path / "adapter"))


def test_import_restores_the_exported_prompt(tiny_lms, tiny_model_dirs, tmp_path):
    saved_prompt(tiny_lms["causal"], tmp_path / "prompt", tiny_model_dirs["causal"])
    export_peft(tmp_path / "prompt", tmp_path / "adapter")
    import_peft(tmp_path / "adapter", tmp_path / "back")
    original, back = Prompt.load(tmp_path / "prompt"), Prompt.load(tmp_path / "back")
    assert back.text() == original.text() and torch.equal(back.vectors["p0"], original.vectors["p0"])
    assert back.meta["model"] == str(tiny_model_dirs["causal"])


def test_adapter_trained_by_peft_imports_with_the_same_logits(tiny_lms, tiny_model_dirs, reviews_task, tmp_path):
    from transformers import AutoModelForCausalLM

    torch.manual_seed(3)
    base = AutoModelForCausalLM.from_pretrained(str(tiny_model_dirs["causal"]))
    config = peft.PromptTuningConfig(task_type=peft.TaskType.CAUSAL_LM, num_virtual_tokens=4)
    peft.get_peft_model(base, config).save_pretrained(str(tmp_path / "adapter"))
    import_peft(tmp_path / "adapter", tmp_path / "prompt", template="[P*4]Review: {text}\nSentiment:{answer}")
    prompt = Prompt.load(tmp_path / "prompt")
    assert_same_logits(tiny_lms["causal"], reviews_task, prompt, peft_model(tiny_model_dirs["causal"], tmp_path / "adapter"))


def test_export_refuses_prompts_peft_cannot_hold(tiny_lms, tiny_model_dirs, tmp_path):
    lm = tiny_lms["causal"]
    Prompt.from_template("Review: {text}[P*4]{answer}", vectors={"p0": torch.zeros(4, lm.hidden_size)},
                         meta={"model": str(tiny_model_dirs["causal"])}).save(tmp_path / "middle")  # fmt: skip
    with pytest.raises(PromptoptError, match="one block of vectors in front of the input, and PEFT cannot put vectors "
                                             "in the middle"):
        export_peft(tmp_path / "middle", tmp_path / "a")
    saved_prompt(lm, tmp_path / "bert", tiny_model_dirs["masked"])  # BERT puts [CLS] in front of every text
    with pytest.raises(PromptoptError, match=r"\[CLS\]"):
        export_peft(tmp_path / "bert", tmp_path / "b")


def test_import_refuses_other_adapters_and_pickles(tmp_path):
    (tmp_path / "lora").mkdir()
    (tmp_path / "lora" / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA"}))
    (tmp_path / "lora" / "adapter_config.json").write_text(json.dumps({"peft_type": "IA3"}))
    with pytest.raises(PromptoptError, match="'peft_type' is 'IA3'; promptopt imports PROMPT_TUNING, P_TUNING, "
                                             "PREFIX_TUNING, LORA"):
        import_peft(tmp_path / "lora", tmp_path / "out")
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "adapter_config.json").write_text(json.dumps({"peft_type": "PROMPT_TUNING", "num_virtual_tokens": 2}))
    (tmp_path / "bin" / "adapter_model.bin").write_bytes(b"pickle")
    with pytest.raises(PromptoptError, match="pickled"):
        import_peft(tmp_path / "bin", tmp_path / "out")


def test_cli_export_and_import(tiny_lms, tiny_model_dirs, tmp_path):
    saved_prompt(tiny_lms["causal"], tmp_path / "prompt", tiny_model_dirs["causal"])
    runner = CliRunner()
    out = runner.invoke(cli, ["export-peft", "--prompt", str(tmp_path / "prompt"), "--output", str(tmp_path / "adapter")])
    assert out.exit_code == 0, out.output
    out = runner.invoke(cli, ["import-peft", str(tmp_path / "adapter"), "--output", str(tmp_path / "back"),
                              "--template", "[P*4]Review: {text}\\nSentiment:{answer}"])  # fmt: skip
    assert out.exit_code == 0, out.output
    assert Prompt.load(tmp_path / "back").text() == "[P*4:p0]Review: {text}\nSentiment:{answer}"
    out = runner.invoke(cli, ["import-peft", str(tmp_path / "adapter"), "--output", str(tmp_path / "x"), "-t", "{text}[P*4]{answer}"])
    assert out.exit_code == 2 and "must start with the adapter's [P*4]" in out.output


# -- P-tuning, prefix tuning, LoRA, masked LMs ----------------------------------------------------------------------

PLAIN = "Review: {text}\nSentiment:{answer}"


def peft_logprobs(model, lm, examples, masked=False):
    """PEFT's log-probabilities at the answer position of each example (the last token; a causal LM)."""
    rows = []
    for ex in examples:
        ids = lm.tokenizer("Review: " + ex.inputs["text"] + "\nSentiment:", add_special_tokens=False,
                           return_tensors="pt")["input_ids"]  # fmt: skip
        with torch.no_grad():
            logits = model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits[0, -1].float()
        rows.append(torch.log_softmax(logits, -1))
    return torch.stack(rows)


def ours(lm, task, prompt_dir, examples):
    from promptopt.engine.adapt import ModelEdit, applied

    prompt = Prompt.load(prompt_dir)
    with applied(lm, ModelEdit.load(prompt_dir)):
        return Scorer(lm, task).vocab_logprobs(prompt, examples).detach()


def test_ptuning_prompt_exports_as_p_tuning_with_the_same_logits(tiny_lms, tiny_model_dirs, reviews_task, tmp_path):
    lm = tiny_lms["causal"]
    vectors = torch.randn(4, lm.hidden_size, generator=torch.Generator().manual_seed(2))
    Prompt.from_template(TEMPLATE, vectors={"p0": vectors}, meta={"model": str(tiny_model_dirs["causal"]),
                                                                 "encoder": "lstm"}).save(tmp_path / "prompt")  # fmt: skip
    export_peft(tmp_path / "prompt", tmp_path / "adapter")
    config = json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())
    assert config["peft_type"] == "P_TUNING" and config["encoder_reparameterization_type"] == "LSTM"
    examples = reviews_task.load_split("dev")[:3]
    model = peft_model(tiny_model_dirs["causal"], tmp_path / "adapter")
    assert type(model.peft_config["default"]).__name__ == "PromptEncoderConfig"
    assert_same_logits(lm, reviews_task, Prompt.load(tmp_path / "prompt"), model)
    import_peft(tmp_path / "adapter", tmp_path / "back")
    back = Prompt.load(tmp_path / "back")
    assert torch.equal(back.vectors["p0"], vectors) and back.meta["encoder"] == "lstm"
    assert torch.allclose(ours(lm, reviews_task, tmp_path / "back", examples),
                          ours(lm, reviews_task, tmp_path / "prompt", examples), atol=0, rtol=0)  # fmt: skip


def test_p_tuning_adapter_trained_by_peft_imports_with_the_same_logits(tiny_lms, tiny_model_dirs, reviews_task, tmp_path):
    from transformers import AutoModelForCausalLM

    torch.manual_seed(4)
    base = AutoModelForCausalLM.from_pretrained(str(tiny_model_dirs["causal"]))
    config = peft.PromptEncoderConfig(task_type=peft.TaskType.CAUSAL_LM, num_virtual_tokens=4, encoder_hidden_size=16)
    model = peft.get_peft_model(base, config)
    model.save_pretrained(str(tmp_path / "adapter"))
    import_peft(tmp_path / "adapter", tmp_path / "prompt", template=TEMPLATE)
    examples = reviews_task.load_split("dev")[:3]
    theirs = peft_logprobs(model.eval(), tiny_lms["causal"], examples)  # the encoder computes the vectors
    assert torch.allclose(ours(tiny_lms["causal"], reviews_task, tmp_path / "prompt", examples), theirs, atol=1e-5, rtol=0)


def deep_prompt_dir(lm, directory, model_dir, n=3):
    from promptopt.engine.adapt import prefix_shape

    prefix = torch.randn(prefix_shape(lm, n), generator=torch.Generator().manual_seed(5))
    return Prompt.from_template(PLAIN, prefix=prefix, meta={"model": str(model_dir)}).save(directory)


def test_deep_prefix_exports_as_prefix_tuning_with_the_same_logits_and_imports_back(tiny_lms, tiny_model_dirs,
                                                                                   reviews_task, tmp_path):  # fmt: skip
    lm = tiny_lms["causal"]
    deep_prompt_dir(lm, tmp_path / "prompt", tiny_model_dirs["causal"])
    export_peft(tmp_path / "prompt", tmp_path / "adapter")
    config = json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())
    assert config["peft_type"] == "PREFIX_TUNING" and config["task_type"] == "CAUSAL_LM"
    examples = reviews_task.load_split("dev")[:3]
    theirs = peft_logprobs(peft_model(tiny_model_dirs["causal"], tmp_path / "adapter"), lm, examples)
    assert torch.allclose(ours(lm, reviews_task, tmp_path / "prompt", examples), theirs, atol=1e-5, rtol=0)
    import_peft(tmp_path / "adapter", tmp_path / "back")
    back, original = Prompt.load(tmp_path / "back"), Prompt.load(tmp_path / "prompt")
    assert torch.equal(back.prefix, original.prefix) and back.text() == original.text()


def test_prefix_adapter_trained_by_peft_imports_with_the_same_logits(tiny_lms, tiny_model_dirs, reviews_task, tmp_path):
    from transformers import AutoModelForCausalLM

    torch.manual_seed(6)
    base = AutoModelForCausalLM.from_pretrained(str(tiny_model_dirs["causal"]))
    model = peft.get_peft_model(base, peft.PrefixTuningConfig(task_type=peft.TaskType.CAUSAL_LM, num_virtual_tokens=3))
    torch.nn.init.normal_(model.prompt_encoder["default"].embedding.weight)
    model.save_pretrained(str(tmp_path / "adapter"))
    import_peft(tmp_path / "adapter", tmp_path / "prompt", template=PLAIN)
    examples = reviews_task.load_split("dev")[:3]
    theirs = peft_logprobs(model.eval(), tiny_lms["causal"], examples)
    assert torch.allclose(ours(tiny_lms["causal"], reviews_task, tmp_path / "prompt", examples), theirs, atol=1e-5, rtol=0)


def lora_prompt_dir(tiny_lms, tiny_model_dirs, directory):
    """A short LoRA run (B moves away from zero) on the tiny causal model."""
    import promptopt

    promptopt.run(method="lora", task=str(reviews_path()), templates=[PLAIN], output=str(directory),
                  lm=tiny_lms["causal"], seed=0, max_train=8, max_eval=8, progress=False,
                  train={"steps": 3, "batch_size": 4, "lr": 0.05, "eval_every": 0, "checkpoint_every": 0},
                  method_options={"rank": 2, "alpha": 4, "targets": "q_proj,v_proj,down_proj"})  # fmt: skip
    return directory / "prompt"


def reviews_path():
    from conftest import TINY_REVIEWS

    return TINY_REVIEWS / "task.toml"


def test_lora_run_exports_as_a_peft_lora_adapter_with_the_same_logits(tiny_lms, tiny_model_dirs, reviews_task, tmp_path):
    lm = tiny_lms["causal"]
    prompt_dir = lora_prompt_dir(tiny_lms, tiny_model_dirs, tmp_path / "run")
    export_peft(prompt_dir, tmp_path / "adapter")
    config = json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())
    assert config["peft_type"] == "LORA" and config["r"] == 2
    examples = reviews_task.load_split("dev")[:3]
    mine = ours(lm, reviews_task, prompt_dir, examples)
    theirs = peft_logprobs(peft_model(tiny_model_dirs["causal"], tmp_path / "adapter"), lm, examples)
    assert torch.allclose(mine, theirs, atol=1e-5, rtol=0)
    plain = Scorer(lm, reviews_task).vocab_logprobs(Prompt.from_template(PLAIN), examples)
    assert not torch.allclose(mine, plain, atol=1e-4)  # the adapter changed the model's answer distribution
    import_peft(tmp_path / "adapter", tmp_path / "back")
    assert torch.allclose(ours(lm, reviews_task, tmp_path / "back", examples), mine, atol=1e-6, rtol=0)


def test_lora_adapter_trained_by_peft_imports_with_the_same_logits(tiny_lms, tiny_model_dirs, reviews_task, tmp_path):
    from transformers import AutoModelForCausalLM

    torch.manual_seed(7)
    base = AutoModelForCausalLM.from_pretrained(str(tiny_model_dirs["causal"]))
    config = peft.LoraConfig(task_type=peft.TaskType.CAUSAL_LM, r=4, lora_alpha=8, target_modules=["k_proj", "up_proj"],
                             init_lora_weights=False, rank_pattern={"up_proj": 2})  # fmt: skip
    model = peft.get_peft_model(base, config)
    model.save_pretrained(str(tmp_path / "adapter"))
    import_peft(tmp_path / "adapter", tmp_path / "prompt", template=PLAIN)
    examples = reviews_task.load_split("dev")[:3]
    theirs = peft_logprobs(model.eval(), tiny_lms["causal"], examples)
    assert torch.allclose(ours(tiny_lms["causal"], reviews_task, tmp_path / "prompt", examples), theirs, atol=1e-5, rtol=0)


def test_masked_lm_prefix_exports_labelled_feature_extraction_with_the_same_logits(tiny_lms, tiny_model_dirs,
                                                                                   reviews_task, tmp_path):  # fmt: skip
    from transformers import AutoModelForMaskedLM

    lm = tiny_lms["masked"]
    deep_prompt_dir(lm, tmp_path / "prompt", tiny_model_dirs["masked"])
    export_peft(tmp_path / "prompt", tmp_path / "adapter")
    config = json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())
    assert config["task_type"] == "FEATURE_EXTRACTION" and config["peft_type"] == "PREFIX_TUNING"
    model = peft.PeftModel.from_pretrained(AutoModelForMaskedLM.from_pretrained(str(tiny_model_dirs["masked"])),
                                           str(tmp_path / "adapter")).eval()  # fmt: skip
    assert type(model).__name__ == "PeftModelForFeatureExtraction"
    examples = reviews_task.load_split("dev")[:3]
    mine = ours(lm, reviews_task, tmp_path / "prompt", examples)
    for i, ex in enumerate(examples):
        text = "Review: " + ex.inputs["text"] + "\nSentiment: " + lm.tokenizer.mask_token
        ids = lm.tokenizer(text, return_tensors="pt")["input_ids"]
        at = int((ids[0] == lm.tokenizer.mask_token_id).nonzero()[0])
        with torch.no_grad():
            logits = model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits[0, at].float()
        assert torch.allclose(torch.log_softmax(logits, -1), mine[i], atol=1e-5, rtol=0)


def test_export_says_why_a_fine_tuned_model_or_a_mixed_prompt_has_no_peft_adapter(tiny_lms, tiny_model_dirs, tmp_path):
    from promptopt.engine.adapt import ModelEdit

    lm = tiny_lms["causal"]
    deep_prompt_dir(lm, tmp_path / "full", tiny_model_dirs["causal"])
    name, p = next(iter(lm.model.named_parameters()))
    ModelEdit(replace={name: p.detach().clone()}).save(tmp_path / "full")
    with pytest.raises(PromptoptError, match="a deep prefix and a model edit; a PEFT adapter holds one kind"):
        export_peft(tmp_path / "full", tmp_path / "a")
    Prompt.from_template(PLAIN, meta={"model": str(tiny_model_dirs["causal"])}).save(tmp_path / "ft")
    ModelEdit(replace={name: p.detach().clone()}).save(tmp_path / "ft")
    with pytest.raises(PromptoptError, match="replaces weights \\(fine-tuning\\); PEFT has no adapter"):
        export_peft(tmp_path / "ft", tmp_path / "b")
