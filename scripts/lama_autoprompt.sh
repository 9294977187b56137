#!/bin/bash
# LAMA T-REx: the LAMA manual template vs AutoPrompt whose trigger slots start as that template's words;
# seeded 40/20/40 split of each relation's facts (select on dev, report test)
cd /work/main
run() { rel=$1; manual=$2; triggers=$3; init=$4
  echo "== $rel manual"; date
  ( time promptopt run --method manual --task lama-$rel -t "$manual" --seed 0 --no-progress --output runs/ap-lama-$rel-manual --overwrite ) 2>&1 | grep -v Loading
  echo "== $rel autoprompt"; date
  ( time promptopt run --method autoprompt --task lama-$rel -t "$triggers" -o "init_text=$init" --steps 1000 --batch-size 32 -o candidates=10 -o select_every=3 -o time_budget=240 --seed 0 --no-progress --output runs/ap-lama-$rel-autoprompt --overwrite ) 2>&1 | grep -v Loading
}
run P19 "{sub_label} was born in {answer} ." "{sub_label}[T*3]{answer} ." " was born in"
run P37 "The official language of {sub_label} is {answer} ." "[T*4] {sub_label}[T]{answer} ." "The official language of is"
run P103 "The native language of {sub_label} is {answer} ." "[T*4] {sub_label}[T]{answer} ." "The native language of is"
run P1412 "{sub_label} used to communicate in {answer} ." "{sub_label}[T*4]{answer} ." " used to communicate in"
run P36 "The capital of {sub_label} is {answer} ." "[T*3] {sub_label}[T]{answer} ." "The capital of is"
run P407 "{sub_label} was written in {answer} ." "{sub_label}[T*3]{answer} ." " was written in"
