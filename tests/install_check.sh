#!/bin/sh
# The README's "Using tapegrad from your own program", followed as a user would after a --prefix install:
# PKG_CONFIG_PATH and LD_LIBRARY_PATH at PREFIX/lib/<multiarch>, then outside programs built with its lines
#     cc app.c $(pkg-config --cflags --libs tapegrad)
#     cc mpi_app.c $(pkg-config --cflags --libs tapegrad-mpi)        (with MPI)
# and run; `tapegrad` alone must bring no MPI. Then the same program in a meson project that takes tapegrad
# as a subproject. Arguments: build dir, source dir, with-mpi | without-mpi (how the build was configured).
set -eu
build=$1 src=$2 mpi=$3
fail() { echo "install_check: $*"; exit 1; }
dest=$(mktemp -d)
trap 'rm -rf "$dest"' EXIT
# `meson install --destdir` puts the prefix the build was configured with under $dest; rewriting the .pc
# files' prefix= lines makes that tree what `meson setup --prefix=$PREFIX` would have installed.
meson install -C "$build" --destdir "$dest" --quiet >/dev/null
pcfile=$(find "$dest" -name tapegrad.pc | head -n 1)
[ -n "$pcfile" ] || fail "no tapegrad.pc was installed"
PREFIX=$dest$(sed -n 's/^prefix=//p' "$pcfile")
for pc in "$(dirname "$pcfile")"/tapegrad*.pc; do sed -i "s|^prefix=.*|prefix=$PREFIX|" "$pc"; done

# The README's paths, literally.
multiarch=$(cc -print-multiarch)
libdir="$PREFIX/lib${multiarch:+/$multiarch}"
[ -f "$libdir/pkgconfig/tapegrad.pc" ] || fail "the README says lib/$multiarch/pkgconfig, but tapegrad.pc is at $pcfile"
export PKG_CONFIG_PATH="$libdir/pkgconfig"
export LD_LIBRARY_PATH="$libdir"

# tapegrad alone needs no MPI: not in its flags, its requirements or the library's dependencies.
cflags=$(pkg-config --cflags tapegrad)
case "$cflags" in *mpi*) fail "pkg-config --cflags tapegrad names MPI: $cflags" ;; esac
reqs=$(pkg-config --print-requires --print-requires-private tapegrad)
case "$reqs" in *mpi*) fail "tapegrad.pc requires MPI: $reqs" ;; esac
if readelf -d "$libdir/libtapegrad.so" | grep -qi 'NEEDED.*mpi'; then fail "libtapegrad.so links MPI"; fi

# The README's line (warnings as errors on top, so that the installed headers stay clean for users).
cd "$dest"
cp "$src/tests/outside/"*.c .
cc -std=c11 -Wall -Wextra -Werror -pedantic app.c api_contract.c $(pkg-config --cflags --libs tapegrad) -o app
./app
echo "install_check: built and ran an outside program with the README's line, libm calls included, no MPI flags"

if [ "$mpi" = with-mpi ]; then
  [ -f "$libdir/pkgconfig/tapegrad-mpi.pc" ] || fail "built with MPI, but no tapegrad-mpi.pc was installed"
  [ -f "$PREFIX/include/tapegrad/tg_mpi.h" ] || fail "built with MPI, but tg_mpi.h was not installed"
  cc -std=c11 -Wall -Wextra -Werror mpi_app.c mpi_contract.c $(pkg-config --cflags --libs tapegrad-mpi) -o mpi_app
  mpirun -np 1 --oversubscribe --allow-run-as-root --mca btl self,vader ./mpi_app
  echo "install_check: built an MPI program with the README's tapegrad-mpi line and ran it under mpirun"
elif [ -e "$libdir/pkgconfig/tapegrad-mpi.pc" ]; then
  fail "built without MPI, yet tapegrad-mpi.pc was installed"
fi

# The same program in a meson project that takes tapegrad as a subproject: dependency('tapegrad')
# resolves through meson.override_dependency.
mkdir -p "$dest/sub/subprojects"
ln -s "$(cd "$src" && pwd)" "$dest/sub/subprojects/tapegrad"
cp app.c api_contract.c "$dest/sub/"
cat > "$dest/sub/meson.build" <<'MESON'
project('outside', 'c', default_options : ['c_std=c11'])
subproject('tapegrad', default_options : ['tests=false', 'bench=false'])
executable('app', 'app.c', 'api_contract.c', dependencies : dependency('tapegrad'))
MESON
PKG_CONFIG_PATH= meson setup "$dest/sub/build" "$dest/sub" >/dev/null
ninja -C "$dest/sub/build" >/dev/null
LD_LIBRARY_PATH= "$dest/sub/build/app"
echo "install_check: built and ran the same program with tapegrad as a meson subproject"
