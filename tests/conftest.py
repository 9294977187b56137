"""Shared fixtures: tiny causal and masked LMs built from configs (offline, seconds), with tokenizers trained here."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parent.parent
TINY_REVIEWS = REPO / "datasets" / "tiny_reviews"
SHARED = Path(os.environ.get("PROMPTOPT_DATA", REPO.parent / "shared" / "datasets"))
# the GPU check runs the same suite with PROMPTOPT_TEST_DEVICE=cuda (benchmarks/gpu_check.sh)
DEVICE = os.environ.get("PROMPTOPT_TEST_DEVICE", "cpu")

# -- which hooks the suite calls (by running, not by reading test sources) -------------------------------------------
import promptopt  # noqa: E402
import promptopt.plugins as _plugins  # noqa: E402
from promptopt import hookspecs as _hookspecs  # noqa: E402

HOOKS_CALLED: set[str] = set()
HOOK_NAMES = sorted(n for n in dir(_hookspecs) if getattr(getattr(_hookspecs, n), "promptopt_spec", None) is not None)


class HookRecorder:
    """Added to every plugin manager the tests build: records each hook the engine, runs and CLI call."""

    @promptopt.hookimpl
    def register_optimizers(self, register):
        HOOKS_CALLED.add("register_optimizers")

    @promptopt.hookimpl
    def register_tasks(self, register):
        HOOKS_CALLED.add("register_tasks")

    @promptopt.hookimpl
    def register_commands(self, cli):
        HOOKS_CALLED.add("register_commands")

    @promptopt.hookimpl
    def run_start(self, run):
        HOOKS_CALLED.add("run_start")

    @promptopt.hookimpl
    def training_step(self, run, step, loss, lr):
        HOOKS_CALLED.add("training_step")

    @promptopt.hookimpl
    def evaluation(self, run, step, split, metrics):
        HOOKS_CALLED.add("evaluation")

    @promptopt.hookimpl
    def run_end(self, run, result):
        HOOKS_CALLED.add("run_end")


_make = _plugins.make_plugin_manager


def _recording_plugin_manager(allow=None, extra_plugins=()):
    return _make(allow, [*extra_plugins, HookRecorder()])


_plugins.make_plugin_manager = _recording_plugin_manager
_plugins.reset_plugin_manager()


def missing_hooks(called: set[str]) -> list[str]:
    """Hookspecs no test called."""
    return [n for n in HOOK_NAMES if n not in called]


def pytest_sessionfinish(session, exitstatus):
    """The meta-test: after a whole-suite run (every test file, no -k/-m, nothing failed), every hookspec must have
    been called by some test in this process; otherwise the session fails, naming the hooks."""
    config = session.config
    if exitstatus != 0 or config.getoption("keyword") or config.getoption("markexpr") or not session.items:
        return
    files = {Path(str(item.fspath)).name for item in session.items}
    if files != {p.name for p in Path(__file__).parent.glob("test_*.py")}:
        return
    missing = missing_hooks(HOOKS_CALLED)
    if missing:
        reporter = config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_line(f"hookspecs no test called: {missing} (add a test that makes the engine call them)",
                                red=True)  # fmt: skip
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


CORPUS = [
    line["text"] for split in ("train", "dev", "test")
    for line in map(json.loads, (TINY_REVIEWS / f"{split}.jsonl").read_text().splitlines())
] + ["Review: Sentiment: positive negative great terrible yes no true false It was Answer: Question:"] * 20  # fmt: skip


def _byte_bpe_tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=600, special_tokens=["<|endoftext|>", "<pad>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())  # fmt: skip
    tok.train_from_iterator(CORPUS, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>", pad_token="<pad>",
                                   bos_token="<|endoftext|>")  # fmt: skip


def _wordpiece_tokenizer():
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece()
    trainer = trainers.WordPieceTrainer(vocab_size=600, special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"])
    tok.train_from_iterator(CORPUS, trainer)
    cls_id, sep_id = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B [SEP]", special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)]
    )
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
                                   sep_token="[SEP]", mask_token="[MASK]")  # fmt: skip


def _save_tiny(kind: str, directory: Path) -> Path:
    from transformers import BertConfig, BertForMaskedLM, LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    if kind == "causal":
        tok = _byte_bpe_tokenizer()
        config = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                             num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                             pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                             tie_word_embeddings=False)  # fmt: skip
        model = LlamaForCausalLM(config)
    else:
        tok = _wordpiece_tokenizer()
        config = BertConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                            num_attention_heads=4, max_position_embeddings=256, pad_token_id=tok.pad_token_id)  # fmt: skip
        model = BertForMaskedLM(config)
    model.save_pretrained(directory)
    tok.save_pretrained(directory)
    return directory


@pytest.fixture(scope="session")
def tiny_model_dirs(tmp_path_factory) -> dict[str, Path]:
    """Local directories holding a tiny Llama (causal) and a tiny BERT (masked), loadable by path like any HF model."""
    root = tmp_path_factory.mktemp("models")
    return {kind: _save_tiny(kind, root / kind) for kind in ("causal", "masked")}


@pytest.fixture(scope="session")
def tiny_lms(tiny_model_dirs):
    from promptopt.engine import load_model

    return {kind: load_model(str(path), device=DEVICE, dtype="float32") for kind, path in tiny_model_dirs.items()}


@pytest.fixture(params=["causal", "masked"])
def tiny_lm(request, tiny_lms):
    return tiny_lms[request.param]


@pytest.fixture(scope="session")
def reviews_task():
    from promptopt.plugins import get_task

    return get_task(str(TINY_REVIEWS / "task.toml"))


def needs_shared(*parts: str) -> Path:
    """The path of a shared data set, or skip the test with the reason."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"shared data set {path} is not present (set PROMPTOPT_DATA)")
    return path
