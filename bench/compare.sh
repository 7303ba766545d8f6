#!/usr/bin/env bash
# compare.sh: one run of everything the speed table needs, in one invocation, on one machine state:
#   bench_rnn (release build): tapegrad at W0-W2 (and W2 at T 256), checks on and off, 1 and 2 OpenBLAS
#     threads, beside the bound (the step's 6 T sgemm calls alone); tape overhead, mallocs, gradcheck time
#   bench_rnn_numpy.py: the seed's TimeRNN, fixed, at OPENBLAS_NUM_THREADS=1 and =2 (NumPy's only knob)
#   bench_rnn_torch.py: PyTorch's nn.RNN, the same loop written from torch ops, and torch.autograd.gradcheck
#     (full) of that loop, at torch.set_num_threads(1) and (2)
# then prints one table: each figure with its threads, each ratio against the bound measured in the same
# bench_rnn process, and the targets' ratios (memory against NumPy's, gradcheck against torch's).
#
#   bench/compare.sh [--quick] [--md FILE] [--json FILE]
#     --quick   tiny sizes (a smoke run; the timings mean nothing)
#     --md      also write the table as markdown to FILE (docs/speed.md's speed table)
#     --json    keep every program's JSON lines in FILE
# Environment: BUILD (default /tmp/perf-rel), PYTHON (default /usr/bin/python3, which has NumPy and torch).
# OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE, when set, are passed on as they are; glibc malloc is left at its
# defaults (GLIBC_TUNABLES as given) for all three, and the header says so.
set -euo pipefail
cd "$(dirname "$0")/.."
quick=() md="" json=""
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) quick=(--quick) ;;
    --md) md="${2:?--md needs a file}"; shift ;;
    --json) json="${2:?--json needs a file}"; shift ;;
    *) echo "usage: $0 [--quick] [--md FILE] [--json FILE]" >&2; exit 2 ;;
  esac
  shift
done
build="${BUILD:-/tmp/perf-rel}"
python="${PYTHON:-/usr/bin/python3}"
if [ ! -d "$build" ]; then
  meson setup "$build" --buildtype=release -Dtests=false >/dev/null
else
  meson configure "$build" -Dbuildtype=release -Dbench=true >/dev/null
fi
ninja -C "$build" bench/bench_rnn >/dev/null

lines=$(mktemp)
trap 'rm -f "$lines"' EXIT
# Each program's table goes to stderr as it comes; its JSON lines to $lines.
run() {
  echo "# $*" >&2
  "$@" | while IFS= read -r line; do
    case "$line" in "{"*) printf '%s\n' "$line" >>"$lines" ;; *) printf '%s\n' "$line" >&2 ;; esac
  done
}
run "$build/bench/bench_rnn" "${quick[@]}"
for t in 1 2; do run env OPENBLAS_NUM_THREADS=$t "$python" bench/bench_rnn_numpy.py "${quick[@]}"; done
run "$python" bench/bench_rnn_torch.py "${quick[@]}"
[ -z "$json" ] || cp "$lines" "$json"

machine="$(lscpu | sed -n 's/^Model name: *//p' | head -1), $(nproc) cores"
load="$(uptime | sed 's/.*load average: //')"
"$python" bench/compare_report.py "$lines" "$md" "$machine" "$(date -u +%Y-%m-%d)" "$load"
