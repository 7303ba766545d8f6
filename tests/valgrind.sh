#!/bin/sh
# Runs a Criterion test binary under valgrind. Criterion forks a process per test, and a child's
# valgrind exit code does not reach the runner, so each process logs to its own file and any line in
# any log (with -q, valgrind only writes errors and leaks) fails the run.
dir=$(mktemp -d) || exit 1
trap 'rm -rf "$dir"' EXIT
valgrind -q --log-file="$dir/vg.%p" --leak-check=full --errors-for-leak-kinds=definite,indirect \
    --show-leak-kinds=definite,indirect --trace-children=yes "$@"
rc=$?
for f in "$dir"/vg.*; do
    if [ -s "$f" ]; then
        cat "$dir"/vg.*
        echo "valgrind.sh: valgrind reported errors or leaks (above)"
        exit 1
    fi
done
exit $rc
