#!/usr/bin/env bash
# The README's first command: install, build, and pretrain a small byte-level GPT on
# the shipped corpus (examples/data) as a colossus-launch job: the coordinator, one node
# agent and two data-parallel workers on this machine (examples/manifests/laptop.yaml).
# Shows the loss falling, the validation loss against a unigram baseline, and a sample.
# Running it again resumes from the last committed checkpoint in runs/demo/checkpoints;
# `rm -rf runs/demo` starts over. Arguments go to the workers (train_gpt flags).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/build.sh release --target train_gpt colossus-data colossus-launch
rm -rf runs/demo/data
build/release/runtime/colossus-data encode --tokenizer byte --val-fraction 0.05 \
  --output runs/demo/data examples/data/kjv-pentateuch.txt
exec build/release/launcher/colossus-launch examples/manifests/laptop.yaml -- "$@"
