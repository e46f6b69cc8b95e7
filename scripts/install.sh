#!/usr/bin/env bash
# scripts/install.sh [PREFIX] — install libmemalloc for C programs.
#
# Installs, under PREFIX (default /usr/local):
#   lib/libmemalloc.so             the shared library (link with -lmemalloc, or
#                                  LD_PRELOAD it under any program)
#   lib/libmemalloc.a              the static library
#   include/memalloc.h             the header (standard functions + extensions)
#   include/memalloc-new-delete.h  C++: operator new/delete on memalloc (docs/cxx.md)
#   lib/pkgconfig/memalloc.pc      for pkg-config
# and prints each file installed.
#
# Builds the release library first (cargo build --release) when it is
# missing or older than src/ or Cargo.toml; run it once as yourself before
# `sudo scripts/install.sh` so that root does not build in your tree.
#
# DESTDIR=/stage scripts/install.sh /usr copies into /stage/usr while the
# files (memalloc.pc) still name /usr, for packaging.
#
# Afterwards (PKG_CONFIG_PATH=PREFIX/lib/pkgconfig when pkg-config does not
# search PREFIX; -Wl,-rpath,PREFIX/lib when PREFIX/lib is not a system
# library directory):
#   cc prog.c $(pkg-config --cflags --libs memalloc)                 # shared
#   cc prog.c $(pkg-config --cflags memalloc) \
#      $(pkg-config --static --libs memalloc | sed 's/-lmemalloc/-l:libmemalloc.a/')
#                                                                    # static
# (-lmemalloc alone picks the .so when both are there; -l:libmemalloc.a
# names the archive, for GNU ld, gold and lld.)
set -uo pipefail

usage() {
    # The comment block at the top of this file.
    awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "${BASH_SOURCE[0]}" >&2
}

case "${1:-}" in
    -h | --help) usage; exit 0 ;;
    -*) echo "install.sh: unknown option $1" >&2; usage; exit 2 ;;
esac
if [[ $# -gt 1 ]]; then
    usage
    exit 2
fi

PREFIX="${1:-/usr/local}"
DESTDIR="${DESTDIR:-}"
case "$PREFIX" in
    /*) ;;
    *)
        if [[ -n "$DESTDIR" ]]; then
            echo "install.sh: PREFIX must be absolute with DESTDIR (got $PREFIX)" >&2
            exit 2
        fi
        PREFIX="$PWD/$PREFIX"
        ;;
esac
PREFIX="${PREFIX%/}"
[[ -z "$PREFIX" ]] && PREFIX=/

SCRIPTS="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)"
ROOT="$(cd "$SCRIPTS/.." && pwd -P)"
SO="$ROOT/target/release/libmemalloc.so"
AR="$ROOT/target/release/libmemalloc.a"
HDR="$ROOT/include/memalloc.h"
HDR_CXX="$ROOT/include/memalloc-new-delete.h"

# The libraries a Rust staticlib needs from the system, as
# `cargo rustc --release --lib --crate-type staticlib -- --print native-static-libs`
# prints them (x86_64-linux-gnu): only libc, as the library is no_std (no
# libgcc_s, no std's libraries).
STATIC_LIBS="-lc"

VERSION="$(sed -n 's/^version *= *"\(.*\)".*/\1/p' "$ROOT/Cargo.toml" | head -n 1)"
DESCRIPTION="$(sed -n 's/^description *= *"\(.*\)".*/\1/p' "$ROOT/Cargo.toml" | head -n 1)"
[[ -z "$VERSION" ]] && VERSION=0.0.0
[[ -z "$DESCRIPTION" ]] && DESCRIPTION="A malloc replacement for Linux"

# ---------------------------------------------------------------- build ---
stale=0
for f in "$SO" "$AR"; do
    if [[ ! -f "$f" ]] ||
        [[ -n "$(find "$ROOT/src" "$ROOT/Cargo.toml" -newer "$f" -print -quit 2>/dev/null)" ]]; then
        stale=1
    fi
done
if [[ $stale -eq 1 ]]; then
    if ! command -v cargo >/dev/null 2>&1 && [[ -x "$HOME/.cargo/bin/cargo" ]]; then
        PATH="$HOME/.cargo/bin:$PATH"
    fi
    if ! command -v cargo >/dev/null 2>&1; then
        echo "install.sh: the library needs building and cargo is not on PATH" >&2
        exit 1
    fi
    echo "install.sh: building the release library (cargo build --release)" >&2
    if ! (cd "$ROOT" && cargo build --release --quiet </dev/null >&2); then
        echo "install.sh: cargo build --release failed" >&2
        exit 1
    fi
    for f in "$SO" "$AR"; do
        if [[ ! -f "$f" ]]; then
            echo "install.sh: the build succeeded but $f does not exist" >&2
            exit 1
        fi
        # As in run.sh: a changed file outside the crate must not trigger a
        # build every time.
        touch "$f"
    done
fi
for f in "$HDR" "$HDR_CXX"; do
    if [[ ! -f "$f" ]]; then
        echo "install.sh: $f is missing" >&2
        exit 1
    fi
done

# -------------------------------------------------------------- install ---
LIBDIR="$DESTDIR$PREFIX/lib"
INCDIR="$DESTDIR$PREFIX/include"
PCDIR="$LIBDIR/pkgconfig"

put() { # put MODE SRC DEST
    if ! install -m "$1" "$2" "$3"; then
        echo "install.sh: cannot install $3" >&2
        exit 1
    fi
    echo "installed $3"
}

if ! install -d "$LIBDIR" "$INCDIR" "$PCDIR"; then
    echo "install.sh: cannot create the directories under $DESTDIR$PREFIX" >&2
    exit 1
fi
put 0755 "$SO" "$LIBDIR/libmemalloc.so"
put 0644 "$AR" "$LIBDIR/libmemalloc.a"
put 0644 "$HDR" "$INCDIR/memalloc.h"
put 0644 "$HDR_CXX" "$INCDIR/memalloc-new-delete.h"

pc="$(mktemp)"
trap 'rm -f "$pc"' EXIT
cat >"$pc" <<EOF
prefix=$PREFIX
exec_prefix=\${prefix}
libdir=\${exec_prefix}/lib
includedir=\${prefix}/include

Name: memalloc
Description: $DESCRIPTION
Version: $VERSION
Libs: -L\${libdir} -lmemalloc
Libs.private: $STATIC_LIBS
Cflags: -I\${includedir}
EOF
put 0644 "$pc" "$PCDIR/memalloc.pc"

echo
echo "memalloc $VERSION installed under $DESTDIR$PREFIX"
if [[ -z "$DESTDIR" ]]; then
    case ":${PKG_CONFIG_PATH:-}:" in
        *":$PREFIX/lib/pkgconfig:"*) pcenv= ;;
        *) pcenv="PKG_CONFIG_PATH=$PREFIX/lib/pkgconfig " ;;
    esac
    echo "  build:    cc prog.c \$(${pcenv}pkg-config --cflags --libs memalloc) -Wl,-rpath,$PREFIX/lib"
    echo "  static:   cc prog.c \$(${pcenv}pkg-config --cflags memalloc) \$(${pcenv}pkg-config --static --libs memalloc | sed 's/-lmemalloc/-l:libmemalloc.a/')"
    echo "  preload:  LD_PRELOAD=$PREFIX/lib/libmemalloc.so prog"
fi
