"""The conformance matrix: one tiny model per architecture family, each with a tokenizer trained here in the style of
that family (byte-level BPE, SentencePiece-style BPE with ``▁`` word boundaries, WordPiece, Unigram), built from a
config (2 layers, hidden size 32, a vocabulary of a few hundred), offline.

For every family: the engine's class scores equal log-probabilities computed plainly with transformers on the
jointly tokenized filled-in string (float32, 1e-5); left and right padding agree; a soft prompt trains one step and
moves; a trigger search runs one iteration.
"""

from __future__ import annotations

import json

import pytest
import torch

import promptopt
from promptopt.data.prompt import Prompt
from promptopt.data.tasks import Example
from promptopt.engine import Scorer, load_model
from promptopt.engine.inputs import VectorLayout, model_positions, position_offset
from promptopt.engine.model import CappedHead, capabilities
from promptopt.errors import PromptoptError
from promptopt.pipeline.runner import sample

from conftest import DEVICE, TINY_REVIEWS

TASK = str(TINY_REVIEWS / "task.toml")
LINES = [json.loads(line)["text"] for line in (TINY_REVIEWS / "train.jsonl").read_text().splitlines()]
CORPUS = LINES + ["Review: Sentiment: It was positive. negative. great terrible"] * 30
TEXTS = [json.loads(line)["text"] for line in (TINY_REVIEWS / "test.jsonl").read_text().splitlines()[:3]]
WORDS = ["negative", "positive"]  # the task's label words, in label order
CAUSAL_TEMPLATE = "Review: {text}\nSentiment: {answer}"
MASKED_TEMPLATE = "Review: {text} Sentiment: {answer}."
VOCAB = 300
SPECIALS = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]


# -- tokenizers, trained here -------------------------------------------------------------------------------------------
def _fast(tok, **specials):
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast(tokenizer_object=tok, **specials)


def _template(tok, single: str, pair: str):
    from tokenizers import processors

    names = {t for t in (single + " " + pair).split() if t.startswith(("<", "[")) and not t.startswith("$")}
    return processors.TemplateProcessing(single=single, pair=pair, special_tokens=[(n, tok.token_to_id(n)) for n in names])


def byte_bpe(bos: bool = False, roberta: bool = False):
    """GPT-2 style: byte-level pre-tokenizer, a space joins the word after it (``Ġword``)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(CORPUS, trainers.BpeTrainer(vocab_size=VOCAB, special_tokens=SPECIALS,
                                                       initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))  # fmt: skip
    if roberta:  # RoBERTa's processor trims the space off the offsets of Ġword
        tok.post_processor = processors.RobertaProcessing(("</s>", 2), ("<s>", 0), trim_offsets=True)
        return _fast(tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>", unk_token="<unk>", mask_token="<mask>",
                     cls_token="<s>", sep_token="</s>")  # fmt: skip
    if bos:
        tok.post_processor = _template(tok, "<s> $A", "<s> $A <s> $B")
    return _fast(tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>")


def sentencepiece_bpe(style: str):
    """SentencePiece-style BPE: a space becomes ``▁`` in front of the next word. ``llama2``: the normalizer prepends
    ``▁`` and replaces spaces (Llama-2's tokenizer.json; alone, " positive" gets a second ``▁``); ``mistral``: the
    Metaspace pre-tokenizer, prepended on the first piece only; ``gemma``: spaces replaced, nothing prepended."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Metaspace(prepend_scheme="always", split=True)  # merges never cross a ▁
    tok.train_from_iterator(CORPUS, trainers.BpeTrainer(vocab_size=VOCAB, special_tokens=SPECIALS))
    if style == "llama2":
        tok.pre_tokenizer = None
        tok.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
        tok.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.Fuse(), decoders.Strip(" ", 1, 0)])
    elif style == "mistral":
        tok.pre_tokenizer = pre_tokenizers.Metaspace(prepend_scheme="first", split=False)
        tok.decoder = decoders.Metaspace(prepend_scheme="first", split=False)
    else:
        tok.pre_tokenizer = None
        tok.normalizer = normalizers.Replace(" ", "▁")
        tok.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.Fuse()])
    tok.post_processor = _template(tok, "<s> $A", "<s> $A <s> $B")
    return _fast(tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>", unk_token="<unk>")


def wordpiece():
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece()
    tok.train_from_iterator(CORPUS, trainers.WordPieceTrainer(vocab_size=VOCAB,
                                                              special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]))  # fmt: skip
    tok.post_processor = _template(tok, "[CLS] $A [SEP]", "[CLS] $A [SEP] $B [SEP]")
    return _fast(tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]", sep_token="[SEP]", mask_token="[MASK]")


def unigram(t5: bool = False):
    """SentencePiece Unigram with Metaspace (XLM-R, T5)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.Unigram())
    tok.pre_tokenizer = pre_tokenizers.Metaspace(prepend_scheme="always")
    tok.decoder = decoders.Metaspace(prepend_scheme="always")
    specials = ["<pad>", "</s>", "<unk>"] if t5 else SPECIALS
    tok.train_from_iterator(CORPUS, trainers.UnigramTrainer(vocab_size=VOCAB, special_tokens=specials, unk_token="<unk>"))
    if t5:
        tok.post_processor = _template(tok, "$A </s>", "$A </s> $B </s>")
        return _fast(tok, eos_token="</s>", pad_token="<pad>", unk_token="<unk>")
    tok.post_processor = _template(tok, "<s> $A </s>", "<s> $A </s> </s> $B </s>")
    return _fast(tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>", unk_token="<unk>", mask_token="<mask>",
                 cls_token="<s>", sep_token="</s>")  # fmt: skip


# -- models, from configs -----------------------------------------------------------------------------------------------
def _ids(tok) -> dict:
    return {"vocab_size": len(tok), "pad_token_id": tok.pad_token_id, "bos_token_id": tok.bos_token_id,
            "eos_token_id": tok.eos_token_id}  # fmt: skip


def _decoder(config_cls, tok, **extra):
    return config_cls(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                      num_key_value_heads=2, max_position_embeddings=128, **_ids(tok), **extra)  # fmt: skip


def family(name: str):
    """(tokenizer, config, model class) of one family."""
    import transformers as t

    if name == "gpt2":
        tok = byte_bpe()
        return tok, t.GPT2Config(n_embd=32, n_layer=2, n_head=4, n_positions=128, **_ids(tok)), t.GPT2LMHeadModel
    if name == "opt":
        tok = byte_bpe(bos=True)
        config = t.OPTConfig(hidden_size=32, num_hidden_layers=2, ffn_dim=64, num_attention_heads=4,
                             max_position_embeddings=128, word_embed_proj_dim=32, **_ids(tok))  # fmt: skip
        return tok, config, t.OPTForCausalLM
    if name == "llama-bytebpe":
        tok = byte_bpe(bos=True)
        return tok, _decoder(t.LlamaConfig, tok), t.LlamaForCausalLM
    if name == "llama-sentencepiece":
        tok = sentencepiece_bpe("llama2")
        return tok, _decoder(t.LlamaConfig, tok), t.LlamaForCausalLM
    if name == "mistral":
        tok = sentencepiece_bpe("mistral")
        return tok, _decoder(t.MistralConfig, tok, sliding_window=None), t.MistralForCausalLM
    if name == "qwen2":
        tok = byte_bpe()
        return tok, _decoder(t.Qwen2Config, tok), t.Qwen2ForCausalLM
    if name == "gemma":
        tok = sentencepiece_bpe("gemma")
        return tok, _decoder(t.GemmaConfig, tok, head_dim=8), t.GemmaForCausalLM
    if name == "gemma2":  # logit capping (tanh)
        tok = sentencepiece_bpe("gemma")
        config = _decoder(t.Gemma2Config, tok, head_dim=8, final_logit_softcapping=3.0, sliding_window=64)
        return tok, config, t.Gemma2ForCausalLM
    if name == "bloom":  # ALiBi: no position ids
        tok = byte_bpe()
        return tok, t.BloomConfig(hidden_size=32, n_layer=2, n_head=4, **_ids(tok)), t.BloomForCausalLM
    if name == "gpt-neox":
        tok = byte_bpe()
        config = t.GPTNeoXConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                                 max_position_embeddings=128, **_ids(tok))  # fmt: skip
        return tok, config, t.GPTNeoXForCausalLM
    if name == "bert":
        tok = wordpiece()
        config = t.BertConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                              max_position_embeddings=128, vocab_size=len(tok), pad_token_id=tok.pad_token_id)  # fmt: skip
        return tok, config, t.BertForMaskedLM
    if name == "distilbert":
        tok = wordpiece()
        config = t.DistilBertConfig(dim=32, hidden_dim=64, n_layers=2, n_heads=4, max_position_embeddings=128,
                                    vocab_size=len(tok), pad_token_id=tok.pad_token_id)  # fmt: skip
        return tok, config, t.DistilBertForMaskedLM
    if name in ("roberta", "xlm-roberta"):
        tok = byte_bpe(roberta=True) if name == "roberta" else unigram()
        config_cls = t.RobertaConfig if name == "roberta" else t.XLMRobertaConfig
        config = config_cls(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                            max_position_embeddings=130, **_ids(tok))  # fmt: skip
        return tok, config, (t.RobertaForMaskedLM if name == "roberta" else t.XLMRobertaForMaskedLM)
    if name == "t5":
        tok = unigram(t5=True)
        config = t.T5Config(vocab_size=len(tok), d_model=32, d_kv=8, d_ff=64, num_layers=2, num_heads=4,
                            pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id,
                            decoder_start_token_id=tok.pad_token_id)  # fmt: skip
        return tok, config, t.T5ForConditionalGeneration
    raise AssertionError(name)


CAUSAL = ["gpt2", "opt", "llama-bytebpe", "llama-sentencepiece", "mistral", "qwen2", "gemma", "gemma2", "bloom",
          "gpt-neox"]  # fmt: skip
MASKED = ["bert", "distilbert", "roberta", "xlm-roberta"]
FAMILIES = CAUSAL + MASKED + ["t5"]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """Each family's model saved to a folder and loaded back by path, built once per module."""
    cache: dict = {}

    def get(name):
        if name not in cache:
            tok, config, model_cls = family(name)
            torch.manual_seed(0)
            model = model_cls(config)
            folder = tmp_path_factory.mktemp(name)
            model.save_pretrained(folder)
            tok.save_pretrained(folder)
            cache[name] = load_model(str(folder), device=DEVICE, dtype="float32")
        return cache[name]

    return get


def examples():
    return [Example(inputs={"text": t}, label=WORDS[i % 2]) for i, t in enumerate(TEXTS)]


# -- the reference: transformers on the jointly tokenized string ---------------------------------------------------------
def direct_causal(lm, context: str, continuation: str) -> float:
    """log P(continuation | context): the filled-in string tokenized once; the continuation's tokens are the ones
    that begin at or after its first character (offsets)."""
    tok = lm.tokenizer
    enc = tok(context + continuation, add_special_tokens=True, return_offsets_mapping=True)
    ids, offsets = enc["input_ids"], enc["offset_mapping"]
    special = set(tok.all_special_ids)
    answer = [k for k, (s, e) in enumerate(offsets) if e > len(context) and ids[k] not in special]
    assert answer and offsets[answer[0]][0] >= len(context), "the answer starts inside a context token"
    keep = ids[: answer[-1] + 1]  # what follows the answer (an end-of-sequence token) a causal LM never sees
    with torch.no_grad():
        logp = torch.log_softmax(lm.model(input_ids=torch.tensor([keep], device=lm.device)).logits.float(), -1)[0]
    return sum(float(logp[k - 1, keep[k]]) for k in answer)


def direct_masked(lm, before: str, word: str, after: str) -> float:
    """The answer's tokens in the filled-in string replaced by masks; the sum of their log-probabilities there."""
    tok = lm.tokenizer
    text = before + " " + word + after
    enc = tok(text, add_special_tokens=True, return_offsets_mapping=True)
    ids, offsets = enc["input_ids"], enc["offset_mapping"]
    start, end = len(before), len(before) + 1 + len(word)
    answer = [k for k, (s, e) in enumerate(offsets) if e > s and s >= start and e <= end]
    masked = [tok.mask_token_id if k in answer else t for k, t in enumerate(ids)]
    with torch.no_grad():
        logits = lm.model(input_ids=torch.tensor([masked], device=lm.device)).logits.float()
    logp = torch.log_softmax(logits, -1)[0]
    return sum(float(logp[k, ids[k]]) for k in answer)


def direct_seq2seq(lm, context: str, continuation: str) -> float:
    """log P(continuation | context) with the context as the encoder's input and the continuation's tokens (of the
    jointly tokenized string) as the decoder's."""
    tok = lm.tokenizer
    enc = tok(context + continuation, add_special_tokens=False, return_offsets_mapping=True)
    target = [t for t, (s, e) in zip(enc["input_ids"], enc["offset_mapping"]) if e > len(context)]
    source = tok(context, add_special_tokens=True)["input_ids"]
    decoder = [lm.model.config.decoder_start_token_id, *target[:-1]]
    with torch.no_grad():
        logits = lm.model(input_ids=torch.tensor([source]), decoder_input_ids=torch.tensor([decoder])).logits
    logp = torch.log_softmax(logits.float(), -1)[0]
    return sum(float(logp[k, t]) for k, t in enumerate(target))


def template(lm) -> str:
    return MASKED_TEMPLATE if lm.kind.value == "masked" else CAUSAL_TEMPLATE


def reference(lm, text: str, word: str) -> float:
    if lm.kind.value == "seq2seq":
        return direct_seq2seq(lm, f"Review: {text}\nSentiment:", " " + word)
    if lm.kind.value == "causal":
        return direct_causal(lm, f"Review: {text}\nSentiment:", " " + word)
    return direct_masked(lm, f"Review: {text} Sentiment:", word, ".")


# -- the matrix -----------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", FAMILIES)
def test_class_scores_equal_transformers_on_the_jointly_tokenized_string(built, reviews_task, name):
    lm = built(name)
    prompt = Prompt.from_template(template(lm))
    got = {side: Scorer(lm, reviews_task, padding_side=side, batch_size=8).class_scores(prompt, examples())
           for side in ("left", "right")}  # fmt: skip
    torch.testing.assert_close(got["left"], got["right"], atol=1e-5, rtol=0)
    if lm.kind.value == "causal":  # right padding (the default) runs attention without a padding mask: proven equal
        assert Scorer(lm, reviews_task).facts.maskless_ok
    want = torch.tensor([[reference(lm, t, w) for w in WORDS] for t in TEXTS])
    torch.testing.assert_close(got["right"].cpu(), want, atol=1e-5, rtol=0)


@pytest.mark.parametrize("name", FAMILIES)
def test_a_soft_prompt_trains_one_step_and_moves(built, reviews_task, name):
    lm = built(name)
    scorer = Scorer(lm, reviews_task, batch_size=8)
    prompt = Prompt.from_template("[P*2] " + template(lm))
    torch.manual_seed(0)
    vectors = (lm.embeddings.weight[5:7].detach().clone().float()).requires_grad_(True)
    before = vectors.detach().clone()
    loss = scorer.loss(prompt, examples(), vectors={"p0": vectors})
    loss.backward()
    assert torch.isfinite(vectors.grad).all() and vectors.grad.abs().sum() > 0
    with torch.no_grad():  # one normalised gradient step (tiny random models have tiny gradients)
        vectors -= 0.5 * vectors.grad / vectors.grad.norm()
        assert not torch.equal(vectors, before)
        assert float(scorer.loss(prompt, examples(), vectors={"p0": vectors})) < float(loss)


@pytest.mark.parametrize("name", FAMILIES)
def test_a_trigger_search_runs_one_iteration(built, name, tmp_path):
    lm = built(name)
    result = promptopt.run(method="autoprompt", task=TASK, output=str(tmp_path / "run"), lm=lm, seed=0,
                           templates=[template(lm).replace("{answer}", "[T*2] {answer}")],
                           method_options={"iterations": 1, "candidates": 2, "select_every": 0},
                           train={"steps": 1, "batch_size": 4, "checkpoint_every": 0}, max_train=4, max_eval=4,
                           progress=False)  # fmt: skip
    assert result.status == "ok" and result.metrics["eval"]["n"] == 4


# -- the tokenization contract and the detected capabilities -------------------------------------------------------------
def test_sentencepiece_answer_is_the_continuation_not_the_word_alone(built, reviews_task):
    lm = built("llama-sentencepiece")
    tok = lm.tokenizer
    alone = tok(" positive", add_special_tokens=False)["input_ids"]
    scorer = Scorer(lm, reviews_task)
    ids = scorer.verbalizer(Prompt.from_template(CAUSAL_TEMPLATE)).ids[1][0]
    assert ids != alone and tok.convert_ids_to_tokens(alone)[0] == "▁"  # tokenized alone: a second boundary marker
    whole = tok("Sentiment: positive", add_special_tokens=False)["input_ids"]
    assert whole[-len(ids) :] == ids


@pytest.mark.parametrize("name", FAMILIES)
def test_a_text_only_prompt_gives_the_tokens_of_the_filled_in_string(built, reviews_task, name):
    """Causal: context and answer are the tokens of the filled-in string (the last answer token is only read).
    Masked: those tokens with the answer's replaced by masks. Encoder-decoder: the encoder gets the string without
    the answer, the decoder the start token and the answer's tokens of the filled-in string (all but the last)."""
    lm = built(name)
    tok = lm.tokenizer
    scorer = Scorer(lm, reviews_task)
    after = "" if lm.kind.value == "causal" else "."
    prompt = Prompt.from_template("Review: {text} It was {answer}" + after)
    context = f"Review: {TEXTS[0]} It was"
    whole = tok(context + " positive" + after, add_special_tokens=True, return_offsets_mapping=True)
    answer = [k for k, (s, e) in enumerate(whole["offset_mapping"])
              if e > s and s >= len(context) and e <= len(context) + len(" positive")]  # fmt: skip
    words = [whole["input_ids"][k] for k in answer]
    assert words == scorer.encoder.answer_ids(prompt, "positive")
    enc = scorer.encoder.encode(prompt, {"text": TEXTS[0]}, VectorLayout.build(prompt), answer_len=len(words),
                                continuation=words)  # fmt: skip
    if lm.kind.value == "causal":
        assert enc.ids + words[-1:] == whole["input_ids"]
        assert enc.read == list(range(answer[0] - 1, answer[-1]))
    elif lm.kind.value == "masked":
        masked = [tok.mask_token_id if k in answer else t for k, t in enumerate(whole["input_ids"])]
        assert enc.ids == masked and enc.read == answer
    else:
        assert enc.ids == tok(context + after, add_special_tokens=True)["input_ids"]
        assert enc.decoder == [lm.model.config.decoder_start_token_id, *words[:-1]]


def test_roberta_positions_exclude_the_offset(built):
    lm = built("roberta")
    assert position_offset(lm) == 2 and model_positions(lm) == 128


@pytest.mark.parametrize("name, position_ids, positions", [("bloom", False, "alibi"), ("llama-bytebpe", True, "rotary"),
                                                          ("gpt2", True, "absolute"), ("gpt-neox", True, "rotary")])  # fmt: skip
def test_capabilities_are_detected(built, name, position_ids, positions):
    caps = capabilities(built(name))
    assert (caps.position_ids, caps.positions, caps.softcap) == (position_ids, positions, None)
    assert caps.cache_arg is not None


def test_capped_head_logits_keep_the_answer_only_head(built, reviews_task):
    lm = built("gemma2")
    scorer = Scorer(lm, reviews_task)
    assert capabilities(lm).softcap == 3.0
    assert isinstance(scorer.facts.head, CappedHead)  # passed the self-check against the full model's logits


def test_nan_scores_stop_the_evaluation_naming_the_examples(built, reviews_task, monkeypatch):
    lm = built("gpt2")
    scorer = Scorer(lm, reviews_task)
    exs = [Example(inputs={"text": t}, label="positive", source=f"dev.jsonl:{i + 1}") for i, t in enumerate(TEXTS)]
    real = scorer.scores

    def poisoned(prompt, batch, vectors=None):
        out = real(prompt, batch, vectors)
        return torch.where(torch.arange(len(batch)).unsqueeze(1) == 1, torch.nan, out)

    monkeypatch.setattr(scorer, "scores", poisoned)
    with pytest.raises(PromptoptError, match=r"NaN or infinite scores for 1 of the 3 examples.*dev.jsonl"):
        scorer.evaluate(Prompt.from_template(CAUSAL_TEMPLATE), exs)


CHAT = ("{% for m in messages %}<s>{{ m.role }}\n{{ m.content }}</s>\n{% endfor %}"
        "{% if add_generation_prompt %}<s>assistant\n{% endif %}")  # fmt: skip


def test_chat_template_wraps_the_prompt_and_reads_the_answer_in_the_assistant_turn(built, reviews_task, monkeypatch):
    lm = built("qwen2")
    monkeypatch.setattr(lm.tokenizer, "chat_template", CHAT, raising=False)
    prompt = Prompt.from_template(CAUSAL_TEMPLATE)
    got = Scorer(lm, reviews_task, chat_template=True).class_scores(prompt, examples())
    for i, text in enumerate(TEXTS):
        context = f"<s>user\nReview: {text}\nSentiment:</s>\n<s>assistant\n"
        for j, word in enumerate(WORDS):
            assert abs(float(got[i, j]) - direct_causal(lm, context, word)) < 1e-5
    plain = Scorer(lm, reviews_task).class_scores(prompt, examples())
    assert not torch.allclose(plain, got)  # off by default


def test_chat_template_needs_one(built, reviews_task):
    with pytest.raises(PromptoptError, match="no chat template"):
        Scorer(built("bert"), reviews_task, chat_template=True)


def test_eval_rescores_with_the_runs_scoring_rule_and_chat_template_unless_overridden(reviews_task, tmp_path):
    """A run scored with ``calibrated`` inside the chat template of a model that has one: ``promptopt eval`` gives
    the run's numbers with no flags, and the plain rule / no template when told."""
    from click.testing import CliRunner

    from promptopt.cli import cli

    tok, config, model_cls = family("qwen2")
    tok.chat_template = CHAT
    torch.manual_seed(0)
    folder = tmp_path / "qwen2-chat"
    model_cls(config).save_pretrained(folder)
    tok.save_pretrained(folder)
    lm = load_model(str(folder), device=DEVICE, dtype="float32")
    result = promptopt.run(method="soft", task=TASK, output=str(tmp_path / "run"), lm=lm, seed=0,
                           templates=["[P*2] " + CAUSAL_TEMPLATE], scoring="calibrated", chat_template=True,
                           train={"steps": 2, "batch_size": 4, "checkpoint_every": 0}, max_train=8, max_eval=8,
                           progress=False)  # fmt: skip
    saved = Prompt.load(tmp_path / "run" / "prompt")
    assert saved.meta["scored_with"] == {"scoring": "calibrated", "chat_template": True, "dtype": "float32",
                                         "padding_side": "right"}  # fmt: skip
    reported = [json.loads(line) for line in (tmp_path / "run" / "predictions.jsonl").read_text().splitlines()]

    def cli_eval(*flags):
        out = CliRunner().invoke(cli, ["eval", "--prompt", str(tmp_path / "run" / "prompt"), "--task", TASK,
                                       "--split", "test", "--max-eval", "8", "--device", DEVICE, *flags])  # fmt: skip
        assert out.exit_code == 0, out.output
        return json.loads(out.stdout)

    assert cli_eval() == result.metrics["eval"]
    again = promptopt.evaluate_prompt(tmp_path / "run" / "prompt", TASK, split="test", max_eval=8, progress=False)
    assert again.scoring == "calibrated"
    assert [p["scores"] for p in again.predictions] == [p["scores"] for p in reported]
    plain = promptopt.evaluate_prompt(tmp_path / "run" / "prompt", TASK, split="test", max_eval=8, progress=False,
                                      scoring="loglik", chat_template=False)  # fmt: skip
    examples = sample(reviews_task.load_split("test"), 8, 0, "eval")
    want = Scorer(lm, reviews_task, scoring="loglik").evaluate(saved, examples, progress=False)
    assert plain.scoring == "loglik" and plain.predictions == want.predictions
    assert [p["scores"] for p in plain.predictions] != [p["scores"] for p in reported]
    assert cli_eval("--scoring", "loglik", "--no-chat-template") == want.metrics
