"""The rooms' order, checked: a room's files include only headers of the rooms below it that it lists in
ALLOWED (core knows no op and no layer; ops know no layer), and, given the static library, its objects
call only into those rooms, with no two files calling each other.

    rooms.py SRCDIR [LIB.a ...]       check the tree (and the calls of libtapegrad.a, libtapegrad_mpi.a)
    rooms.py --planted SRCDIR         prove the include check fails: plant upward includes in a copy

Prints "rooms: ok (...)" or one line per violation, and exits 1 on any."""
import os
import re
import shutil
import subprocess
import sys
import tempfile

# Lowest first. Each room may use the rooms listed for it, all of them lower in this order.
ROOMS = ["core", "check", "io", "ops", "train", "layers"]
ALLOWED = {
    "core": [],
    "check": ["core"],
    "io": ["core"],
    "ops": ["core"],
    "train": ["core", "io"],
    "layers": ["core", "check", "io", "ops", "train"],  # the top room: the umbrella header includes every room
}
INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"', re.M)


def room_files(src):
    """{room: [(path, text)]} for every .c and .h file of the rooms."""
    out = {}
    for room in ROOMS:
        d = os.path.join(src, room)
        out[room] = [(os.path.join(room, f), open(os.path.join(d, f), encoding="utf-8").read())
                     for f in sorted(os.listdir(d)) if f.endswith((".c", ".h"))]
    return out


def check_includes(src):
    files = room_files(src)
    home = {os.path.basename(p): room for room, fs in files.items() for p, _ in fs if p.endswith(".h")}
    bad, n = [], 0
    for room, fs in files.items():
        for path, text in fs:
            for name in INCLUDE.findall(text):
                n += 1
                other = home.get(os.path.basename(name))
                if other and other != room and other not in ALLOWED[room]:
                    bad.append(f"{path} includes {other}/{name}: {room} may include only "
                               f"{', '.join(ALLOWED[room]) or 'its own headers'}")
    return bad, n


def check_calls(libs):
    """From nm of the static libraries: which object defines each symbol, and who calls it."""
    defs, uses = {}, []
    member = None
    out = subprocess.run(["nm", "-A", *libs], check=True, capture_output=True, text=True).stdout
    for line in out.splitlines():
        # libtapegrad.a:core_tape.c.o:0000000000000000 T tg_backward   /   ...:                 U tg__fail
        head, _, rest = line.rpartition(":")
        member = head.rsplit(":", 1)[-1]
        parts = rest.split()
        if len(parts) == 3 and parts[1] in "TDRB":
            defs[parts[2]] = member
        elif len(parts) == 2 and parts[0] == "U":
            uses.append((member, parts[1]))

    def room_of(obj):
        r = obj.split("_", 1)[0]
        return r if r in ROOMS else None

    edges = {(a, defs[s]) for a, s in uses if s in defs and defs[s] != a}
    bad = []
    for a, b in sorted(edges):
        ra, rb = room_of(a), room_of(b)
        if ra and rb and ra != rb and rb not in ALLOWED[ra]:
            bad.append(f"{a} calls into {b}: {ra} may call only {', '.join(ALLOWED[ra]) or 'itself'}")
        if (b, a) in edges and a < b:
            bad.append(f"{a} and {b} call each other")
    return bad, len(edges)


def main(argv):
    for room, allowed in ALLOWED.items():
        assert all(ROOMS.index(r) < ROOMS.index(room) for r in allowed), room
    if argv[1:2] == ["--planted"]:
        # Each planted include must be caught, else the check cannot fail.
        plants = [("core/tensor.c", "tg_ops.h"), ("ops/nn.c", "tg_rnn.h"), ("check/compare.c", "tg_io.h"),
                  ("io/npy.c", "tg_train.h")]
        missed = []
        for path, header in plants:
            with tempfile.TemporaryDirectory() as tmp:
                for room in ROOMS:
                    shutil.copytree(os.path.join(argv[2], room), os.path.join(tmp, room))
                with open(os.path.join(tmp, path), "a", encoding="utf-8") as f:
                    f.write(f'\n#include "{header}"\n')
                bad, _ = check_includes(tmp)
                if not any(b.startswith(path) and header in b for b in bad):
                    missed.append(f"{path} including {header}")
        print("rooms --planted: " + ("every planted include caught" if not missed else "MISSED " + "; ".join(missed)))
        return 1 if missed else 0
    bad, n_inc = check_includes(argv[1])
    n_calls = 0
    if len(argv) > 2:
        more, n_calls = check_calls(argv[2:])
        bad += more
    for b in bad:
        print("rooms: " + b)
    if not bad:
        print(f"rooms: ok ({n_inc} includes" + (f", {n_calls} file-to-file calls" if len(argv) > 2 else "") +
              " follow " + " < ".join(ROOMS) + ")")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
