#!/bin/sh
# Installs the build into a scratch prefix and builds an outside program against it with pkg-config,
# as a user would: `cc app.c $(pkg-config --cflags --libs tapegrad)`. Arguments: build dir, source dir.
set -eu
build=$1 src=$2
dest=$(mktemp -d)
trap 'rm -rf "$dest"' EXIT
meson install -C "$build" --destdir "$dest" --quiet >/dev/null
pcfile=$(find "$dest" -name tapegrad.pc | head -n 1)
[ -n "$pcfile" ] || { echo "install_check: no tapegrad.pc was installed"; exit 1; }
# The .pc names the prefix it was configured for; point a copy of it at the scratch install.
prefix=$(sed -n 's/^prefix=//p' "$pcfile")
mkdir "$dest/pc"
sed "s|^prefix=.*|prefix=$dest$prefix|" "$pcfile" > "$dest/pc/tapegrad.pc"
export PKG_CONFIG_PATH="$dest/pc"
flags=$(pkg-config --cflags --libs tapegrad)
cc -std=c11 -Wall -Wextra -Werror -pedantic -o "$dest/app" "$src/tests/outside/app.c" "$src/tests/outside/api_contract.c" $flags
libdir=$(pkg-config --variable=libdir tapegrad)
LD_LIBRARY_PATH="$libdir" "$dest/app"
echo "install_check: built and ran an outside program against the installed library"
# With MPI, tg_mpi.h is installed too: an outside file compiles against it with mpicc.
if [ -f "$dest$prefix/include/tapegrad/tg_mpi.h" ]; then
  mpicc -std=c11 -Wall -Wextra -Werror -c -o "$dest/mpi_contract.o" "$src/tests/outside/mpi_contract.c" \
    $(pkg-config --cflags tapegrad)
  echo "install_check: the MPI contract compiles against the installed tg_mpi.h"
fi

# The same program in a meson project that takes tapegrad as a subproject: dependency('tapegrad')
# resolves through meson.override_dependency.
mkdir -p "$dest/sub/subprojects"
ln -s "$(cd "$src" && pwd)" "$dest/sub/subprojects/tapegrad"
cp "$src/tests/outside/app.c" "$src/tests/outside/api_contract.c" "$dest/sub/"
cat > "$dest/sub/meson.build" <<'MESON'
project('outside', 'c', default_options : ['c_std=c11'])
subproject('tapegrad', default_options : ['tests=false', 'bench=false'])
executable('app', 'app.c', 'api_contract.c', dependencies : dependency('tapegrad'))
MESON
PKG_CONFIG_PATH= meson setup "$dest/sub/build" "$dest/sub" >/dev/null
ninja -C "$dest/sub/build" >/dev/null
"$dest/sub/build/app"
echo "install_check: built and ran the same program with tapegrad as a meson subproject"
