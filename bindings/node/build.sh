#!/usr/bin/env bash
# Builds build/flux.node from src/flux_node.c with gcc alone: Node's headers from Debian
# (libnode-dev: /usr/include/node) and libflux through pkg-config (after `make install`), or
# FLUX_INCLUDE / FLUX_LIBDIR pointing at a tree. No node-gyp, no npm (see README.md).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
node_include=${NODE_INCLUDE:-/usr/include/node}
[[ -f $node_include/node_api.h ]] || {
    echo "no $node_include/node_api.h: apt-get install libnode-dev (or set NODE_INCLUDE)" >&2
    exit 1
}
if [[ -n ${FLUX_LIBDIR:-} ]]; then
    flux_flags=(-I"${FLUX_INCLUDE:?}" -L"$FLUX_LIBDIR" -lflux -Wl,-rpath,"$FLUX_LIBDIR")
else
    # shellcheck disable=SC2207 # pkg-config's flags are words
    flux_flags=($(pkg-config --cflags --libs flux) -Wl,-rpath,"$(pkg-config --variable=libdir flux)")
fi
mkdir -p "$here/build"
# Node resolves the addon's own N-API symbols from the running node binary: leave them
# undefined (the default for a shared object on Linux).
${CC:-gcc} -std=c11 -O2 -fPIC -shared -Wall -Wextra -Werror -I"$node_include" \
    "$here/src/flux_node.c" -o "$here/build/flux.node" "${flux_flags[@]}"
echo "built $here/build/flux.node"
