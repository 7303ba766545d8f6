#!/bin/sh
# A training run stopped and resumed from its checkpoint ends with exactly the parameters of a run
# that never stopped. Arguments: an example that takes DIR --epochs N --save F --resume F and prints
# "resumed from ... after epoch K" and "fingerprint HEX" (bptt_tour, spiral); the epochs in all; the
# epochs before the stop.
set -eu
prog=$1 total=$2 first=$3
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
fingerprint() { sed -n 's/.*fingerprint \([0-9a-f]*\).*/\1/p' "$1"; }
"$prog" "$dir" --epochs "$total" > "$dir/straight.txt"
"$prog" "$dir" --epochs "$first" --save "$dir/ckpt.safetensors" > "$dir/first.txt"
"$prog" "$dir" --epochs "$total" --resume "$dir/ckpt.safetensors" > "$dir/resumed.txt"
a=$(fingerprint "$dir/straight.txt") b=$(fingerprint "$dir/resumed.txt") c=$(fingerprint "$dir/first.txt")
echo "straight $total epochs: $a; $first then resumed to $total: $b; after $first: $c"
grep -q "resumed from .* after epoch $first" "$dir/resumed.txt" || { echo "resume_check: the run did not resume"; exit 1; }
[ -n "$a" ] && [ "$a" = "$b" ] && [ "$a" != "$c" ] || { echo "resume_check: the resumed run differs"; exit 1; }
echo "resume_check: the resumed run continued exactly where the saved one stopped"
