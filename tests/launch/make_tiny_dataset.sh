#!/bin/sh
# Builds the small prepared dataset that torch test suites read (ctest fixture `prepared_tiny`).
set -eu
root="$1"
"$HLLM_BIN/hllm" synth --out "$root/csv" --users 600 --items 240 --topics 6 --seed 11
"$HLLM_BIN/hllm" prepare --interactions "$root/csv/interactions.csv" --items "$root/csv/items.csv" \
  --out "$root/prepared" --train-tokenizer 600 --max-text-tokens 32 --quiet
