#!/bin/sh
# tests/fuzz/run.sh SECONDS [JOBS]: builds the libFuzzer targets with clang (ASan + UBSan, the library
# instrumented for coverage) into build-fuzz/, then runs each for SECONDS seconds, JOBS at a time (1 by
# default), from its committed seed corpus (tests/fuzz/corpus/<target>, only read) and what earlier runs
# found (build-fuzz/corpus/<target>). Prints libFuzzer's final figures per target: executions, coverage
# (edges, features) and corpus size. Fails on the first target that crashes, with its log and the crashing
# input left in build-fuzz/ (each crash becomes a regression test in the suite).
set -eu
secs=${1:?usage: tests/fuzz/run.sh SECONDS [JOBS]}
jobs=${2:-1}
root=$(cd "$(dirname "$0")/../.." && pwd)
out=${FUZZ_BUILD:-$root/build-fuzz}
cc=${FUZZ_CC:-clang}
targets=${FUZZ_TARGETS:-npy safetensors checkpoint ops}
mkdir -p "$out/obj"

# -O1 and no -DNDEBUG, as for any sanitizer build; the library gets coverage (fuzzer-no-link), the targets
# the fuzzer's main. One BLAS thread, as in the test suite.
cflags="-std=c11 -g -O1 -Wall -Wextra -Werror -D_POSIX_C_SOURCE=200809L -fno-omit-frame-pointer
  -fsanitize=address,undefined -fno-sanitize-recover=all -I$root/core -I$root/check -I$root/io -I$root/ops
  -I$root/train -I$root/layers
  $(pkg-config --cflags openblas libcjson sleef)"
libs="$(pkg-config --libs openblas libcjson libxxhash sleef) -lm -lpthread"
# The library's sources but the optional MPI layer (the targets do not use it); the vector loops of
# core/vmath_*.c each with the -m flag of its instruction set, as meson builds them.
srcs=$(ls "$root"/core/*.c "$root"/check/*.c "$root"/io/*.c "$root"/ops/*.c "$root"/train/*.c "$root"/layers/*.c |
    grep -v '/train/mpi\.c$')
objs=""
for src in $srcs; do
    objs="$objs $out/obj/$(basename "$src" .c).o"
done
# One compiler per source, two at a time; a build is a few tens of seconds, so nothing is cached.
printf '%s\n' $srcs |
    xargs -P 2 -I{} sh -c 'case "{}" in *vmath_avx2.c) m=-mavx2;; *vmath_avx512.c) m=-mavx512f;; *) m=;; esac;
        $0 $1 $m -fsanitize=fuzzer-no-link -c "{}" -o "$2/obj/$(basename "{}" .c).o"' "$cc" "$cflags" "$out"
for t in $targets; do
    # shellcheck disable=SC2086
    $cc $cflags -fsanitize=fuzzer "$root/tests/fuzz/fuzz_$t.c" $objs $libs -o "$out/fuzz_$t"
done
# Built, not run, so that it keeps compiling: it writes the committed seeds (see its opening comment).
# shellcheck disable=SC2086
$cc $cflags "$root/tests/fuzz/make_seeds.c" $objs $libs -o "$out/make_seeds"

run() {
    t=$1
    mkdir -p "$out/corpus/$t" "$out/crashes"
    if OPENBLAS_NUM_THREADS=1 "$out/fuzz_$t" -max_total_time="$secs" -print_final_stats=1 -timeout=20 \
        -rss_limit_mb=2560 -artifact_prefix="$out/crashes/$t-" "$out/corpus/$t" "$root/tests/fuzz/corpus/$t" \
        >"$out/$t.log" 2>&1; then
        execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$out/$t.log")
        rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$out/$t.log")
        done_line=$(grep -E '^#[0-9]+[[:space:]]+DONE' "$out/$t.log" | tail -n 1)
        cov=$(printf '%s\n' "$done_line" | sed -n 's/.*cov: \([0-9]*\).*/\1/p')
        ft=$(printf '%s\n' "$done_line" | sed -n 's/.*ft: \([0-9]*\).*/\1/p')
        corp=$(printf '%s\n' "$done_line" | sed -n 's/.*corp: \([0-9]*\).*/\1/p')
        echo "fuzz_$t: clean: $execs executions in ${secs} s ($rate/s), coverage $cov edges, $ft features, corpus $corp"
    else
        tail -n 60 "$out/$t.log"
        echo "fuzz_$t: FAILED (log: $out/$t.log; $(grep -m1 -o 'Test unit written to .*' "$out/$t.log"))"
        return 1
    fi
}

status=0
set -- $targets
while [ $# -gt 0 ]; do
    pids=""
    for _ in $(seq "$jobs"); do
        [ $# -gt 0 ] || break
        run "$1" & pids="$pids $!"
        shift
    done
    for p in $pids; do wait "$p" || status=1; done
done
exit $status
