"""Instruction search (APE, Zhou et al. 2023; OPRO-style rounds): a proposer model writes instructions, the engine
scores them on the selection split, the best are kept and varied for a few rounds.

Round 0: the ``seed_instructions`` (default: none, i.e. the template alone, so the search never ends below it) and
``candidates`` proposals. Each proposal shows the proposer ``demos`` training examples as input-output pairs (a
fresh seeded draw per proposal; pairs that do not fit the proposer's positions are left out) and asks it to complete "The instruction was to" (APE's forward template); the
first line it writes, as a sentence, is the instruction. Rounds 1..``rounds``: each of the ``keep`` best so far is
paraphrased ``per_round`` times (APE's resampling: "Generate a variation of the following instruction while keeping
the semantic meaning"). A candidate prompt is the instruction, a newline, then the template (the task's first, or
``--template``). Duplicates are scored once.

The proposer is the task model (default) or any local causal LM (``proposer=PATH``); generation is the engine's
(:func:`promptopt.sdk.generate`: the same encoding as scoring), sampled at ``temperature`` with a seed derived from
the run's seed, the round and the candidate's number: the same seed gives the same candidates. A masked task model
cannot write (a causal LM or an encoder-decoder can): without a ``proposer`` the search then scores the seed instructions only (and says so in the history).

Every candidate (round, origin, instruction, selection metrics) is a record of ``history.jsonl``. Resume: the
scored candidates are saved after each one (``checkpoint/instruct.json``); a resumed run generates the same
candidates again and scores only those not yet scored.
"""

from __future__ import annotations

import hashlib
import logging
import random
from dataclasses import dataclass, field

from promptopt import hookimpl
from promptopt.sdk import (
    MethodKind, ConfigError,
    Example,
    OptimizeResult,
    Prompt,
    PromptOptimizer,
    PromptoptError,
    ResumableState,
    RunContext,
    TaskKind,
    generate,
    load_model,
)

log = logging.getLogger(__name__)

PROPOSE = ("I gave a friend an instruction and some inputs. The friend read the instruction and wrote an output for "
           "every one of the inputs. Here are the input-output pairs:\n\n{pairs}The instruction was to")  # fmt: skip
VARY = "Generate a variation of the following instruction while keeping the semantic meaning.\n\nInput: {instruction}\nOutput:"


@dataclass
class InstructConfig:
    proposer: str = field(default="", metadata={"help": "local path (or id) of the causal LM that writes instructions (default: the task model)"})  # fmt: skip
    seed_instructions: list[str] = field(default_factory=lambda: [""], metadata={"help": "instructions always scored in round 0 ('' = the template alone; comma-separated)"})  # fmt: skip
    candidates: int = field(default=6, metadata={"help": "instructions proposed from demonstrations in round 0"})
    rounds: int = field(default=2, metadata={"help": "rounds of variation after round 0"})
    keep: int = field(default=2, metadata={"help": "best instructions kept and varied each round"})
    per_round: int = field(default=2, metadata={"help": "variations written of each kept instruction per round"})
    demos: int = field(default=5, metadata={"help": "training examples shown to the proposer per proposal"})
    max_new_tokens: int = field(default=24, metadata={"help": "most tokens of one generated instruction"})
    temperature: float = field(default=0.8, metadata={"help": "sampling temperature of the proposer (0 = greedy)"})

    def __post_init__(self):
        for name in ("candidates", "keep", "per_round", "demos", "max_new_tokens"):
            if getattr(self, name) < 1:
                raise ConfigError(f"InstructConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.rounds < 0:
            raise ConfigError(f"InstructConfig.rounds must be >= 0, got {self.rounds}")
        if self.temperature < 0:
            raise ConfigError(f"InstructConfig.temperature must be >= 0, got {self.temperature}")
        if isinstance(self.seed_instructions, str):
            self.seed_instructions = [self.seed_instructions]


class InstructOptimizer(PromptOptimizer):
    """Instructions written by a proposer model, scored on the selection split, the best kept and varied."""

    name = "instruct"
    description = "instruction search (APE/OPRO-style): a model proposes instructions, the best on the selection split are kept and paraphrased"  # fmt: skip
    kind = MethodKind.HARD
    config_class = InstructConfig
    needs_training_data = True

    def optimize(self, run: RunContext) -> OptimizeResult:
        cfg = self.config
        template = run.templates[0]
        Prompt.from_template(template).check_fields(run.task.inputs)
        if not run.train:
            raise PromptoptError(f"task {run.task.name!r}: instruct needs training examples to show the proposer")
        store = ResumableState(run.output_dir / "checkpoint" / "instruct.json",
                               {"template": template, "seed": run.seed, "train": len(run.train)})  # fmt: skip
        saved = (store.load() if run.resume else None) or {"scored": [], "history_bytes": run.history_bytes()}
        run.truncate_history(saved["history_bytes"])
        search = _Search(run, cfg, template, store, saved["scored"])
        proposer = self._proposer(run)
        for text in cfg.seed_instructions:
            search.score(text, round_=0, origin="seed")
        if proposer is None:
            run.log({"proposer": None, "reason": f"{run.lm.name} is a masked LM and no proposer is given: only the "
                                                 "seed instructions are scored"})  # fmt: skip
        else:
            for i in range(cfg.candidates):
                if search.stop():
                    break
                pairs = random.Random(_seed(run.seed, 0, i)).sample(run.train, min(cfg.demos, len(run.train)))
                search.score(_write(proposer, _propose_context(run, proposer, pairs), cfg, _seed(run.seed, 0, i)),
                             round_=0, origin="proposed")  # fmt: skip
            for r in range(1, cfg.rounds + 1):
                for j, parent in enumerate(search.best(cfg.keep)):
                    for v in range(cfg.per_round):
                        if search.stop():
                            break
                        text = _write(proposer, VARY.format(instruction=parent or "Answer."), cfg,
                                      _seed(run.seed, r, j * cfg.per_round + v))  # fmt: skip
                        search.score(text, round_=r, origin="variation", parent=parent)
        if not search.records:
            raise ConfigError("InstructConfig: no instruction to score: seed_instructions is empty and no proposer can write")
        best = search.best(1)[0]
        record = search.records[best]
        prompt = candidate_prompt(best, template)
        prompt.meta["instruction"] = best
        return OptimizeResult(prompt=prompt, trainable_parameters=0, select_metrics=record["metrics"],
                              extra={"candidates_scored": len(search.records)})  # fmt: skip

    def _proposer(self, run: RunContext):
        if self.config.proposer:
            return load_model(self.config.proposer, device=str(run.lm.device))
        return run.lm if run.lm.kind.value != "masked" else None


class _Search:
    """The scored candidates, in the order scored; saved after each one."""

    def __init__(self, run: RunContext, cfg: InstructConfig, template: str, store: ResumableState, saved: list[dict]):
        self.run, self.cfg, self.template, self.store = run, cfg, template, store
        self.saved = saved
        self.records: dict[str, dict] = {}  # instruction -> its record, in scoring order

    def stop(self) -> bool:
        return bool(self.records) and self.run.compute.exhausted

    def score(self, text: str, round_: int, origin: str, parent: str | None = None) -> None:
        if text in self.records:
            return
        n = len(self.records)
        if n < len(self.saved):  # scored before an interruption: the same candidate again
            record = self.saved[n]
            if record["instruction"] != text:
                raise PromptoptError(f"{self.store.path}: candidate {n} was {record['instruction']!r}, now {text!r}; "
                                     "resume with the same model and options")  # fmt: skip
            self.records[text] = record
            return
        result = self.run.evaluate(candidate_prompt(text, self.template), step=n)
        metrics = {k: v for k, v in result.metrics.items() if k != "per_class"}
        record = {"candidate": n, "round": round_, "origin": origin, "instruction": text, "score": result.score,
                  "metrics": result.metrics, **({"parent": parent} if parent is not None else {})}  # fmt: skip
        self.records[text] = record
        self.run.log({k: v for k, v in record.items() if k != "metrics"} | {"select": metrics})
        self.saved = list(self.records.values())
        self.store.save({"scored": self.saved, "history_bytes": self.run.history_bytes()})

    def best(self, k: int) -> list[str]:
        """The ``k`` best instructions by selection score (the earlier scored first among equals)."""
        order = sorted(self.records.values(), key=lambda r: (-r["score"], r["candidate"]))
        return [r["instruction"] for r in order[:k]]


def candidate_prompt(instruction: str, template: str) -> Prompt:
    """The instruction, a newline, then the template (the template alone for an empty instruction)."""
    if not instruction:
        return Prompt.from_template(template)
    return Prompt.from_template(instruction.replace("{", "{{").replace("}", "}}") + "\n" + template)


def clean_instruction(text: str) -> str:
    """The first non-empty line of generated text as a sentence: stripped, capitalised, ending with a full stop."""
    line = next((ln.strip() for ln in text.splitlines() if ln.strip()), "")
    line = " ".join(line.split())
    if "." in line:
        line = line[: line.index(".") + 1]
    if not line:
        return ""
    line = line[0].upper() + line[1:]
    return line if line.endswith((".", "?", "!")) else line + "."


def _propose_context(run: RunContext, lm, pairs: list[Example]) -> str:
    """APE's forward template with the pairs; pairs are left out from the end until it fits the proposer with room
    for the instruction (at least one is kept, its input cut to 400 characters)."""
    limit = getattr(lm.model.config, "max_position_embeddings", None) or 2048
    room = limit - run.config.max_new_tokens - 8
    pairs = list(pairs)
    while True:
        text = PROPOSE.format(pairs="".join(f"Input: {_input_text(ex)[:400]}\nOutput: {_output(run, ex)}\n\n"
                                            for ex in pairs))  # fmt: skip
        if len(pairs) <= 1 or len(lm.tokenizer(text)["input_ids"]) <= room:
            return text
        pairs.pop()


def _write(lm, context: str, cfg: InstructConfig, seed: int) -> str:
    prompt = Prompt.from_template(context.replace("{", "{{").replace("}", "}}") + "{answer}")
    out = generate(lm, prompt, {}, max_new_tokens=cfg.max_new_tokens, temperature=cfg.temperature, seed=seed)
    return clean_instruction(out.text)


def _seed(seed: int, round_: int, i: int) -> int:
    return int.from_bytes(hashlib.sha256(f"{seed}/{round_}/{i}".encode()).digest()[:4], "little")


def _input_text(ex: Example) -> str:
    return " | ".join(" ".join(str(v).split()) for v in ex.inputs.values())


def _output(run: RunContext, ex: Example) -> str:
    if run.task.kind == TaskKind.CLASSIFICATION:
        return run.task.label_words[ex.label][0]
    return ex.label


@hookimpl
def register_optimizers(register):
    register(InstructOptimizer)
