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
    with pytest.raises(PromptoptError, match="one block of vectors in front"):
        export_peft(tmp_path / "middle", tmp_path / "a")
    saved_prompt(lm, tmp_path / "bert", tiny_model_dirs["masked"])  # BERT puts [CLS] in front of every text
    with pytest.raises(PromptoptError, match=r"\[CLS\]"):
        export_peft(tmp_path / "bert", tmp_path / "b")


def test_import_refuses_other_adapters_and_pickles(tmp_path):
    (tmp_path / "lora").mkdir()
    (tmp_path / "lora" / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA"}))
    with pytest.raises(PromptoptError, match="'peft_type' is 'LORA'"):
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
