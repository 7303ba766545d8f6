#!/usr/bin/env bash
# compare.sh: builds tapegrad in release, runs bench_rnn and bench_rnn_numpy.py on the same sizes and
# prints, per dtype and T, the time of a training step in each and the ratio tapegrad/NumPy (above 1:
# tapegrad is slower), with the default checks (saved) and with checks off.
#
# NumPy runs twice: as it comes, and with glibc's malloc told to keep freed memory (np_keep, through
# GLIBC_TUNABLES). The seed's backward makes weight-sized temporaries every step (x.T @ dt is 1 MiB in
# f32, 2 MiB in f64); glibc hands blocks that large back to the kernel when they are freed, so each
# step faults them in again, which on some machines (VMs) costs as much as the GEMMs. tapegrad's arena
# does no malloc in a warm step, so the second run is the fairer baseline for the code around the GEMMs.
#
#   bench/compare.sh [--quick] [--rounds R] [--md FILE]
#     --quick     tiny sizes (a smoke run; the timings mean nothing)
#     --rounds R  run the three programs R times, in turn, and keep each row's best median (default 1):
#                 on a shared machine, other work only ever makes a step slower
#     --md FILE   also write the table as markdown to FILE
# Environment: BUILD (default /tmp/bb), PYTHON (default /usr/bin/python3, which has NumPy).
# OpenBLAS settings (OPENBLAS_NUM_THREADS, OPENBLAS_CORETYPE, ...) are passed to both as they are:
# NumPy and tapegrad load the same Debian OpenBLAS, so the ratios compare the code around the GEMMs.
set -euo pipefail
cd "$(dirname "$0")/.."
quick=() md="" rounds=1
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) quick=(--quick) ;;
    --md) md="${2:?--md needs a file}"; shift ;;
    --rounds) rounds="${2:?--rounds needs a count}"; shift
              [[ "$rounds" =~ ^[1-9][0-9]*$ ]] || { echo "$0: --rounds wants a positive count" >&2; exit 2; } ;;
    *) echo "usage: $0 [--quick] [--rounds R] [--md FILE]" >&2; exit 2 ;;
  esac
  shift
done
build="${BUILD:-/tmp/bb}"
python="${PYTHON:-/usr/bin/python3}"

if [ ! -d "$build" ]; then
  meson setup "$build" --buildtype=release -Dtests=false >/dev/null
else
  meson configure "$build" -Dbuildtype=release -Dbench=true >/dev/null
fi
ninja -C "$build" bench/bench_rnn >/dev/null

rows=$(mktemp)
trap 'rm -f "$rows"' EXIT
keep=glibc.malloc.mmap_threshold=33554432:glibc.malloc.trim_threshold=4294967296
# Each program's table goes to stderr as it comes; its rows, tagged with their source, to $rows.
run() {
  local tag=$1; shift
  echo "# round $r: $*" >&2
  "$@" | while IFS= read -r line; do printf '%s\n' "$line" >&2; printf '%s\n' "$line"; done |
    awk -v tag="$tag" '$1 ~ /^f(32|64)$/ && NF == 12 { print tag, $0 }' >>"$rows"
}
for ((r = 1; r <= rounds; r++)); do
  run tg "$build/bench/bench_rnn" "${quick[@]}"
  run np "$python" bench/bench_rnn_numpy.py "${quick[@]}"
  run npk env GLIBC_TUNABLES="$keep${GLIBC_TUNABLES:+:$GLIBC_TUNABLES}" "$python" bench/bench_rnn_numpy.py "${quick[@]}"
done

# Rows: source dtype checks N T D H ms/step fwd_ms bwd_ms ms/tstep GFLOP/s step_MiB; per row and source the
# best (lowest) of the rounds' medians, each column on its own; GFLOP/s follows the best ms/step.
awk -v md="$md" '
  function lower(arr, k, v) { if (!((k) in arr) || v + 0 < arr[k] + 0) arr[k] = v }
  { key = $2 " " $4 " " $5 " " $6 " " $7; src = $1 == "tg" ? $3 : $1 }
  !(key in seen) { seen[key] = 1; order[n++] = key }
  { if (!((key, src) in ms) || $8 + 0 < ms[key, src] + 0) gf[key, src] = $12
    lower(ms, key SUBSEP src, $8); lower(fwd, key SUBSEP src, $9); lower(bwd, key SUBSEP src, $10)
    mib[key, src] = $13 }
  function r(a, b) { return b > 0 ? sprintf("%.2f", a / b) : "?" }
  END {
    printf "\n%-5s %4s %4s %4s %4s | %9s %9s %9s %9s | %6s %6s %7s | %6s %6s | %7s %7s %7s | %6s %6s\n",
      "dtype", "N", "T", "D", "H", "tg_ms", "tg_off", "np_ms", "np_keep", "tg/np", "off/np", "tg/keep",
      "fwd/np", "bwd/np", "GF/s_tg", "GF/s_np", "GF/s_k", "MiB_tg", "MiB_np"
    if (md != "") {
      print "| dtype | T | tapegrad ms/step | checks off | NumPy | NumPy, malloc keeps memory | tapegrad / NumPy | checks off / NumPy | tapegrad / NumPy (keep) | ms per time step, tapegrad / NumPy | GFLOP/s, tapegrad / NumPy | step MiB, tapegrad / NumPy |" > md
      print "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|" > md
    }
    for (i = 0; i < n; i++) {
      k = order[i]; split(k, f, " ")
      if (!((k, "np") in ms) || !((k, "npk") in ms)) { printf "%s: no NumPy row\n", k; continue }
      printf "%-5s %4s %4s %4s %4s | %9.2f %9.2f %9.2f %9.2f | %6s %6s %7s | %6s %6s | %7.1f %7.1f %7.1f | %6.1f %6.1f\n",
        f[1], f[2], f[3], f[4], f[5], ms[k, "saved"], ms[k, "off"], ms[k, "np"], ms[k, "npk"],
        r(ms[k, "saved"], ms[k, "np"]), r(ms[k, "off"], ms[k, "np"]), r(ms[k, "saved"], ms[k, "npk"]),
        r(fwd[k, "saved"], fwd[k, "np"]), r(bwd[k, "saved"], bwd[k, "np"]),
        gf[k, "saved"], gf[k, "np"], gf[k, "npk"], mib[k, "saved"], mib[k, "np"]
      if (md != "")
        printf "| %s | %s | %.1f | %.1f | %.1f | %.1f | %s | %s | %s | %.2f / %.2f | %.1f / %.1f | %.0f / %.0f |\n",
          f[1], f[3], ms[k, "saved"], ms[k, "off"], ms[k, "np"], ms[k, "npk"],
          r(ms[k, "saved"], ms[k, "np"]), r(ms[k, "off"], ms[k, "np"]), r(ms[k, "saved"], ms[k, "npk"]),
          ms[k, "saved"] / f[3], ms[k, "np"] / f[3], gf[k, "saved"], gf[k, "np"], mib[k, "saved"], mib[k, "np"] > md
    }
    print "\ntg: tapegrad with its default checks (TG_CHECK_SAVED); off: checks off; np: NumPy; keep/k: NumPy with"
    print "glibc malloc keeping freed memory. Ratios above 1: tapegrad is slower. N, D, H as in the columns."
  }' "$rows"
