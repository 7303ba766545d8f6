#!/usr/bin/env bash
# compare.sh: builds tapegrad in release, runs bench_rnn and bench_rnn_numpy.py on the same sizes and
# prints, per dtype and T, the time of a training step in each and the ratio tapegrad/NumPy (above 1:
# tapegrad is slower), with the default checks (saved) and with checks off.
#
#   bench/compare.sh [--quick] [--md FILE]
#     --quick    tiny sizes (a smoke run; the timings mean nothing)
#     --md FILE  also write the table as markdown to FILE
# Environment: BUILD (default /tmp/bb), PYTHON (default /usr/bin/python3, which has NumPy).
# OpenBLAS settings (OPENBLAS_NUM_THREADS, OPENBLAS_CORETYPE, ...) are passed to both as they are:
# NumPy and tapegrad load the same Debian OpenBLAS, so the ratios compare the code around the GEMMs.
set -euo pipefail
cd "$(dirname "$0")/.."
quick=() md=""
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) quick=(--quick) ;;
    --md) md="${2:?--md needs a file}"; shift ;;
    *) echo "usage: $0 [--quick] [--md FILE]" >&2; exit 2 ;;
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

tg_out=$(mktemp) np_out=$(mktemp)
trap 'rm -f "$tg_out" "$np_out"' EXIT
echo "# running $build/bench/bench_rnn ${quick[*]:-}" >&2
"$build/bench/bench_rnn" "${quick[@]}" | tee "$tg_out" >&2
echo "# running bench/bench_rnn_numpy.py ${quick[*]:-}" >&2
"$python" bench/bench_rnn_numpy.py "${quick[@]}" | tee "$np_out" >&2

# Rows: dtype checks N T D H ms/step fwd_ms bwd_ms ms/tstep GFLOP/s step_MiB
awk -v md="$md" '
  FNR == 1 { file++ }
  $1 !~ /^f(32|64)$/ || NF != 12 { next }
  { key = $1 " " $3 " " $4 " " $5 " " $6 }
  file == 1 { if (!(key in seen)) { seen[key] = 1; order[n++] = key }
              ms[key, $2] = $7; fwd[key, $2] = $8; bwd[key, $2] = $9; gf[key, $2] = $11; mib[key, $2] = $12 }
  file == 2 { ms[key, "np"] = $7; fwd[key, "np"] = $8; bwd[key, "np"] = $9; gf[key, "np"] = $11; mib[key, "np"] = $12 }
  function r(a, b) { return b > 0 ? sprintf("%.2f", a / b) : "?" }
  END {
    printf "\n%-5s %4s %4s %4s %4s | %10s %10s %10s | %9s %9s | %8s %8s | %7s %7s %7s | %8s %8s\n",
      "dtype", "N", "T", "D", "H", "tg_ms", "tg_off_ms", "numpy_ms", "tg/np", "off/np", "fwd/np", "bwd/np",
      "GF/s_tg", "GF/s_of", "GF/s_np", "MiB_tg", "MiB_np"
    if (md != "") {
      print "| dtype | N | T | D = H | tapegrad ms/step (checks on) | tapegrad ms/step (checks off) | NumPy ms/step | tapegrad / NumPy | checks off / NumPy | ms per time step (tapegrad / NumPy) | GFLOP/s (tapegrad / NumPy) | step MiB (tapegrad / NumPy) |" > md
      print "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|" > md
    }
    for (i = 0; i < n; i++) {
      k = order[i]; split(k, f, " ")
      if (!((k, "np") in ms)) { printf "%s: no NumPy row\n", k; continue }
      printf "%-5s %4s %4s %4s %4s | %10.3f %10.3f %10.3f | %9s %9s | %8s %8s | %7.1f %7.1f %7.1f | %8.1f %8.1f\n",
        f[1], f[2], f[3], f[4], f[5], ms[k, "saved"], ms[k, "off"], ms[k, "np"],
        r(ms[k, "saved"], ms[k, "np"]), r(ms[k, "off"], ms[k, "np"]),
        r(fwd[k, "saved"], fwd[k, "np"]), r(bwd[k, "saved"], bwd[k, "np"]),
        gf[k, "saved"], gf[k, "off"], gf[k, "np"], mib[k, "saved"], mib[k, "np"]
      if (md != "")
        printf "| %s | %s | %s | %s | %.1f | %.1f | %.1f | %s | %s | %.2f / %.2f | %.1f / %.1f | %.0f / %.0f |\n",
          f[1], f[2], f[3], f[4], ms[k, "saved"], ms[k, "off"], ms[k, "np"],
          r(ms[k, "saved"], ms[k, "np"]), r(ms[k, "off"], ms[k, "np"]),
          ms[k, "saved"] / f[3], ms[k, "np"] / f[3], gf[k, "saved"], gf[k, "np"], mib[k, "saved"], mib[k, "np"] > md
    }
    print "\ntg/np, fwd/np, bwd/np: tapegrad with its default checks over NumPy; off/np: tapegrad with checks off."
  }' "$tg_out" "$np_out"
