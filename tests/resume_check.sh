#!/bin/sh
# A training run is repeatable, and one stopped and resumed from its checkpoint ends with exactly the
# parameters of a run that never stopped. Arguments: an example that takes --epochs N --save F
# --resume F and prints "resumed from ... after epoch K" and "fingerprint HEX" (bptt_tour, spiral,
# rnnlm); the epochs in all; the epochs before the stop; then the example's own arguments, in which
# @DIR@ stands for a scratch folder.
set -eu
prog=$1 total=$2 first=$3
shift 3
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
run() { # run OUTFILE ARGS...: the example with its own arguments and ARGS
  out=$1
  shift
  "$prog" $(for a in $extra; do [ "$a" = @DIR@ ] && echo "$dir" || echo "$a"; done) "$@" > "$out"
}
extra="$*"
fingerprint() { sed -n 's/.*fingerprint \([0-9a-f]*\).*/\1/p' "$1"; }
run "$dir/straight.txt" --epochs "$total"
run "$dir/again.txt" --epochs "$total"
run "$dir/first.txt" --epochs "$first" --save "$dir/ckpt.safetensors"
run "$dir/resumed.txt" --epochs "$total" --resume "$dir/ckpt.safetensors"
a=$(fingerprint "$dir/straight.txt") r=$(fingerprint "$dir/again.txt")
b=$(fingerprint "$dir/resumed.txt") c=$(fingerprint "$dir/first.txt")
echo "straight $total epochs: $a (again: $r); $first then resumed to $total: $b; after $first: $c"
[ -n "$a" ] && [ "$a" = "$r" ] || { echo "resume_check: two runs with one seed differ"; exit 1; }
grep -q "resumed from .* after epoch $first" "$dir/resumed.txt" || { echo "resume_check: the run did not resume"; exit 1; }
[ "$a" = "$b" ] && [ "$a" != "$c" ] || { echo "resume_check: the resumed run differs"; exit 1; }
echo "resume_check: repeatable, and the resumed run continued exactly where the saved one stopped"
