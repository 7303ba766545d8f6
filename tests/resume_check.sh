#!/bin/sh
# A training run stopped and resumed from its checkpoint ends with exactly the parameters of a run
# that never stopped. Argument: the bptt_tour executable.
set -eu
tour=$1
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
fingerprint() { sed -n 's/.*fingerprint \([0-9a-f]*\).*/\1/p' "$1"; }
"$tour" "$dir" --epochs 12 > "$dir/straight.txt"
"$tour" "$dir" --epochs 7 --save "$dir/ckpt.safetensors" > "$dir/first.txt"
"$tour" "$dir" --epochs 12 --resume "$dir/ckpt.safetensors" > "$dir/resumed.txt"
a=$(fingerprint "$dir/straight.txt") b=$(fingerprint "$dir/resumed.txt") c=$(fingerprint "$dir/first.txt")
echo "straight 12 epochs: $a; 7 then resumed to 12: $b; after 7: $c"
grep -q "resumed from .* after epoch 7" "$dir/resumed.txt" || { echo "resume_check: the run did not resume"; exit 1; }
[ -n "$a" ] && [ "$a" = "$b" ] && [ "$a" != "$c" ] || { echo "resume_check: the resumed run differs"; exit 1; }
echo "resume_check: the resumed run continued exactly where the saved one stopped"
