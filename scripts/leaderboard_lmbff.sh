#!/usr/bin/env bash
# Regenerate docs/leaderboard.md, docs/leaderboard.html and docs/findings.md: the LM-BFF few-shot protocol (Gao et
# al. 2021) with the embedded model (SmolLM2-135M-Instruct).
#
#   scripts/leaderboard_lmbff.sh                 # runs into runs/lmbff (resumable), then writes the three docs
#   LMBFF_DIR=/tmp/lmbff scripts/leaderboard_lmbff.sh
#   LMBFF_TINY=1 scripts/leaderboard_lmbff.sh    # smoke run: sst2 and rte, seed 13, 2 steps, 16 examples per split;
#                                                # runs and docs go to a temporary folder (LMBFF_DIR), never docs/
#   LMBFF_METHODS=manual,soft,lora ...           # only these methods (default: every registered one)
#   LMBFF_TASKS=sst5,rte LMBFF_PARTS=kshot ...   # only these tasks; only the k-shot suites (PARTS: kshot,efficiency)
#
# The protocol: for each task (SST-2, SST-5, RTE, SUBJ) and seed S (13, 21, 42), every method trains on the k-shot
# split 16-S (16 examples per class), chooses on that split's dev (16 per class) and is reported on the task's full
# test set (SST-2: its 1,821 labelled test sentences; RTE: GLUE dev, as LM-BFF). Two baseline rows come from the
# report (--baselines): the majority class of the training labels, and zero-shot manual (the task's first, hand-written
# template scored without training or selection, LM-BFF's zero-shot row). The data-efficiency figure adds SST-2
# runs of manual+demonstrations (demos), soft, ptuning, prefix and lora at 4 and 64 training examples per class
# (sampled from the full train split, 32 held out of it for selection); their 16 point is the k-shot runs.
#
# Every method gets the same compute budget, BUDGET_FLOPS (a cap on estimated FLOPs, selection scoring included,
# --budget-flops), within LM-BFF's schedule of at most 1,000 steps of batch 8, and otherwise its documented
# defaults: method options as `promptopt methods` lists them, the learning rate the README gives for it (LR below;
# the rest train at the loop's default 3e-2). Methods with another learning rate run as their own suite (a suite
# shares one training configuration), and the report reads every suite. Re-running skips finished runs and resumes
# interrupted ones; delete LMBFF_DIR to start over. LMBFF_REPORT_ONLY=1 writes the three docs from the runs
# finished so far (`leaderboard --plan` records every planned run first; the docs say how many have finished).
# Minutes on a GPU; hours on a small CPU.
set -euo pipefail
cd "$(dirname "$0")/.."

P=${PROMPTOPT:-.venv/bin/promptopt}
PY=${PYTHON:-.venv/bin/python}
# 1e13 FLOPs: about 80 steps of batch 8 for a soft prompt on SST-2 with the 135M model (the 32 training examples
# are fit by then: training loss 0.005 at step 78 on split 16-13), the same for every method, so that a row's place
# says what its kind of prompt buys per unit of compute, not who trained longest; and small enough that training
# costs about what scoring the full test set does, so the suite has a chance at its 2-hour target on a 2-core CPU
BUDGET_FLOPS=${BUDGET_FLOPS:-1e13}
BUDGET_WHY="the same cap for every method, counted as the engine counts compute (training forward and input-gradient positions plus selection scoring; fine-tuning's weight gradients are not counted), so that rows differ by the kind of prompt and not by how long each trained; 1e13 is about 80 steps of batch 8 for a soft prompt on SST-2 with SmolLM2-135M (its 32 training examples are fit by then: training loss 0.005 at step 78 on split 16-13), well under LM-BFF's 1,000 steps, and about what scoring SST-2's full test set costs (1.1e13), chosen so that the suite can approach its 2-hour target on a 2-core CPU; the learning-rate schedule is laid out over the 1,000 steps, so within the budget it stays near its peak"
TASKS=${LMBFF_TASKS:-sst2,sst5,rte,subj}
PARTS=${LMBFF_PARTS:-kshot,efficiency}
SEEDS=${LMBFF_SEEDS:-13,21,42}
K=16
EFFICIENCY_SHOTS=4,64
EFFICIENCY_METHODS=demos,soft,ptuning,prefix,lora
declare -A LR=([prefix]=1e-2 [lora]=1e-3 [finetune]=3e-5)
SCHEDULE=(--steps 1000 --batch-size 8)
EVAL=()
# trained prompts inspected by nearest tokens and the projection's score on the selection split (the full inspection,
# with ablation, logit lens, distillation and self-description, took about 4 minutes per soft run on a 2-core CPU:
# more than the run; `promptopt inspect RUN_DIR` does it for any run afterwards)
INSPECT=(--quick-inspect)
out=${LMBFF_DIR:-runs/lmbff}
docs=docs
if [ "${LMBFF_TINY:-0}" = 1 ]; then
    TASKS=sst2,rte
    SEEDS=13
    SCHEDULE=(--steps 2 --batch-size 4 --eval-every 0 --checkpoint-every 0)
    EVAL=(--max-eval 16)
    INSPECT=(--no-inspect)
    out=${LMBFF_DIR:-$(mktemp -d /tmp/lmbff-tiny.XXXXXX)}
    docs=$out/docs
fi
# the dtype a user gets: bf16 on a GPU or a CPU with native bf16, else float32 (promptopt's own choice)
DTYPE=${DTYPE:-$($PY -c 'import torch; from promptopt.engine.model import pick_dtype; print(str(pick_dtype(torch.device("cuda" if torch.cuda.is_available() else "cpu"))).replace("torch.", ""))')}

registered=$($P methods --json | $PY -c 'import json, sys; print(",".join(m["method"] for m in json.load(sys.stdin)))')
wanted=${LMBFF_METHODS:-$registered}
keep() {  # the methods of list $1 that are in list $2, comma-separated
    $PY -c 'import sys; a, b = sys.argv[1].split(","), set(sys.argv[2].split(",")); print(",".join(m for m in a if m in b))' "$1" "$2"
}
methods=$(keep "$registered" "$wanted")
efficiency=$(keep "$EFFICIENCY_METHODS" "$methods")

start=$(date +%s)
dirs=()
report_only=${LMBFF_REPORT_ONLY:-0}
plan=(); [ "$report_only" = 1 ] && plan=(--plan)  # report only: record the planned runs (the docs count them), run none
# a task at a time, so that a suite stopped early holds every method of the tasks it reached; for each task one
# suite per learning rate: "default" holds every method without an entry in LR (and the baselines). A suite's
# suite.json gathers the tasks of its commands
for task in ${TASKS//,/ }; do
for group in default "${!LR[@]}"; do
    if [ "$group" = default ]; then
        lr=(); members=$($PY -c 'import sys; print(",".join(m for m in sys.argv[1].split(",") if m and m not in sys.argv[2].split()))' "$methods" "${!LR[*]}")
    else
        lr=(--lr "${LR[$group]}"); members=$(keep "$group" "$methods")
    fi
    # "13," is the one seed 13 (a lone number would be a count for a suite without --kshot)
    common=(--seeds "${SEEDS%,}," --dtype "$DTYPE" --budget-flops "$BUDGET_FLOPS" "${SCHEDULE[@]}" "${EVAL[@]}" "${lr[@]}")
    if [ -n "$members" ] && [[ ",$PARTS," == *,kshot,* ]]; then
        baselines=(); [ "$group" = default ] && baselines=(--baselines)
        nice -n 5 $P leaderboard "${plan[@]}" --methods "$members" --tasks "$task" --kshot $K "${baselines[@]}" "${INSPECT[@]}" \
            --output "$out/kshot-$group" "${common[@]}" \
            --title "LM-BFF few-shot leaderboard: SmolLM2-135M-Instruct, 16 examples per class" \
            --note "Generated by scripts/leaderboard_lmbff.sh (this file, leaderboard.html and findings.md): one command per task and learning rate, into one suite per learning rate (LMBFF_DIR/kshot-GROUP and efficiency-GROUP, default runs/lmbff); the command above is one of them." \
            --note "Protocol: LM-BFF's k-shot splits 16-{$SEEDS} (16 per class train, 16 per class dev for selection), reported on each task's full test set (SST-2: 1,821 labelled test sentences; RTE: GLUE dev). Seeds are the splits; each interval over seeds is a t-interval over these $(( $(tr -cd , <<< "$SEEDS" | wc -c) + 1 )) splits." \
            --note "Budget: --budget-flops $BUDGET_FLOPS for every method, at most ${SCHEDULE[*]}: $BUDGET_WHY." \
            --note "Learning rates (the README's for each method, else the loop's default 3e-2): prefix 1e-2, lora 1e-3, finetune 3e-5; every method option at its default (transfer without -o source starts as soft does; multitask trains the run's one task)." \
            --note "Trained prompts inspected quickly (--quick-inspect): nearest tokens and the projected prompt's score on the selection split; no ablation, logit lens or distillation." \
            --note "dtype $DTYPE; zero-shot manual: the task's first template scored on the test set without training or selection (LM-BFF's zero-shot row); majority: the most frequent training label (a tie on the balanced splits goes to the first label), scored on the test set."
        dirs+=("$out/kshot-$group")
    fi
    members=$(keep "$members" "$efficiency")
    if [ -n "$members" ] && [ "$task" = sst2 ] && [[ ",$PARTS," == *,efficiency,* ]]; then
        nice -n 5 $P leaderboard "${plan[@]}" --methods "$members" --tasks sst2 --shots $EFFICIENCY_SHOTS --select-split holdout:32 \
            --output "$out/efficiency-$group" "${common[@]}" --no-inspect \
            --title "SST-2 data efficiency" --note "4 and 64 training examples per class, 32 held out of train for selection"
        dirs+=("$out/efficiency-$group")
    fi
done
done

mkdir -p "$docs"
present=()
for d in $(printf '%s\n' "${dirs[@]}" | awk '!seen[$0]++'); do [ -f "$d/suite.json" ] && present+=("$d"); done
dirs=("${present[@]}")
[ ${#dirs[@]} -gt 0 ] || { echo "no suite has started under $out yet"; exit 1; }
for fmt in md html findings; do
    name=leaderboard.$fmt; [ $fmt = findings ] && name=findings.md
    $P report "${dirs[@]}" --format $fmt --output "$docs/$name"
done
echo "suites took $(( ($(date +%s) - start) / 60 )) min; written: $docs/leaderboard.md $docs/leaderboard.html $docs/findings.md"
