#!/usr/bin/env bash
# The README's first command: install, build, and pretrain a small byte-level GPT on
# the shipped corpus (examples/data), on the CPU (or a GPU where one is usable).
# Shows the loss falling, the validation loss against a unigram baseline, and a sample.
# Running it again retrains from scratch into runs/demo.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/build.sh release --target train_gpt colossus-data
rm -rf runs/demo/data
build/release/runtime/colossus-data encode --tokenizer byte --val-fraction 0.05 \
  --output runs/demo/data examples/data/kjv-pentateuch.txt
exec build/release/examples/train_gpt --config examples/configs/demo.yaml "$@"
