#!/usr/bin/env bash
# seq2seq_compare.sh: seconds per training epoch of the book's seq2seq models, tapegrad's example
# (examples/seq2seq.c, release build) beside the book's NumPy code (bench/seq2seq_numpy.py), side by side
# on one machine, on the same data file, with the same settings: wordvec 16, batch 128, Adam, clip 5.
# One run each, one after the other (never two at once); OpenBLAS threads as the environment says (the
# README's table: OPENBLAS_NUM_THREADS=1 for both, the figure least moved by other work on the machine).
#
#   bench/seq2seq_compare.sh [--epochs K] [--quick]
#     --epochs  epochs per run (default 1; a row is the mean of its epochs)
#     --quick   5 000 examples instead of 50 000 (a smoke run)
# Rows: attention on dates (hidden 256, reversed), peeky on addition (hidden 128, reversed), plain on
# addition (hidden 128). Prints a markdown table. Environment: BUILD (default /tmp/perf-rel), PYTHON
# (default /usr/bin/python3, which has NumPy).
set -euo pipefail
cd "$(dirname "$0")/.."
epochs=1 n=50000
while [ $# -gt 0 ]; do
  case "$1" in
    --epochs) epochs="${2:?--epochs needs a number}"; shift ;;
    --quick) n=5000 ;;
    *) echo "usage: $0 [--epochs K] [--quick]" >&2; exit 2 ;;
  esac
  shift
done
build="${BUILD:-/tmp/perf-rel}"
python="${PYTHON:-/usr/bin/python3}"
[ -d "$build" ] || meson setup "$build" --buildtype=release -Dtests=false >/dev/null
ninja -C "$build" examples/seq2seq >/dev/null
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# mean seconds of the "(S s)" of each epoch line
mean_s() { sed -n 's/^epoch .*(\([0-9.]*\) s)$/\1/p' | awk '{s += $1; n++} END {printf "%.1f", n ? s / n : 0}'; }
printf '| model, task | hidden | tapegrad s/epoch | book NumPy s/epoch | speed-up |\n|---|---|---|---|---|\n'
for row in "attention dates 256 --reverse" "peeky addition 128 --reverse" "plain addition 128"; do
  set -- $row
  model=$1 task=$2 hidden=$3 rev=${4:-}
  data="$tmp/$task.txt"
  [ -f "$data" ] || "$build/examples/seq2seq" --task "$task" --examples "$n" --epochs 0 --write-data "$data" >/dev/null
  tg=$("$build/examples/seq2seq" --data "$data" --model "$model" --hidden "$hidden" --epochs "$epochs" $rev 2>/dev/null | tee "$tmp/tg.log" | mean_s)
  np=$("$python" bench/seq2seq_numpy.py --data "$data" --model "$model" --hidden "$hidden" --epochs "$epochs" $rev | tee "$tmp/np.log" | mean_s)
  printf '| %s, %s%s | %s | %s | %s | %s |\n' "$model" "$task" "${rev:+, reversed}" "$hidden" "$tg" "$np" \
    "$(awk -v a="$tg" -v b="$np" 'BEGIN {if (a > 0) printf "%.1fx", b / a; else printf "-"}')"
done
echo
echo "machine: $(lscpu | sed -n 's/^Model name: *//p' | head -1), $(nproc) cores; load $(uptime | sed 's/.*load average: //'); $(date -u +%Y-%m-%d)"
