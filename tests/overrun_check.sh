#!/bin/sh
# overrun_check.sh asan|valgrind PROGRAM: runs tests/overrun.c's two planted one-past-the-end writes and
# passes only when each is reported as a write of 8 bytes where none may go. (A test that cannot fail is
# a defect: this one fails as soon as the arena stops poisoning its redzones.)
mode=$1 prog=$2
status=0
for what in op adjacent; do
    if [ "$mode" = asan ]; then
        want="AddressSanitizer: use-after-poison" want2="WRITE of size 8"
        out=$("$prog" "$what" 2>&1)
    else
        want="Invalid write of size 8" want2="is 0 bytes after a block of size\|bytes inside a block"
        out=$(valgrind --error-exitcode=99 "$prog" "$what" 2>&1)
    fi
    rc=$?
    if [ $rc -ne 0 ] && printf '%s\n' "$out" | grep -q "$want" && printf '%s\n' "$out" | grep -q "$want2"; then
        echo "overrun $what: reported: $(printf '%s\n' "$out" | grep -m1 "$want")"
    else
        printf '%s\n' "$out"
        echo "overrun $what: NOT reported as \"$want\" (exit $rc)"
        status=1
    fi
done
exit $status
