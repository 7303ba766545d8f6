"""The harness of the suite's cross-check scripts (io_numpy, ops_numpy, train_torch, lstm_torch): a line
a check, "ok NAME" or "FAIL NAME: why"; then "LABEL: P passed, F failed", the line CI reads; the exit
status is 1 on any failure, or when nothing was checked at all."""
import sys


class Checks:
    def __init__(self, label):
        self.label, self.passed, self.failed = label, 0, 0

    def result(self, name, why):
        """Counts one check: why is None when it passed, else the reason it failed."""
        if why is None:
            self.passed += 1
            print(f"ok   {name}")
        else:
            self.failed += 1
            print(f"FAIL {name}: {why}")

    def check(self, name, fn):
        """Runs fn, which returns None when fine or a reason; an exception is a failure too."""
        try:
            why = fn()
        except Exception as e:  # a crash in a check is that check's failure, not the script's end
            why = f"{type(e).__name__}: {e}"
        self.result(name, why)

    def finish(self):
        print(f"{self.label}: {self.passed} passed, {self.failed} failed")
        sys.exit(1 if self.failed or not self.passed else 0)
