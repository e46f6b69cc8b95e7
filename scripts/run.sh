#!/usr/bin/env bash
# scripts/run.sh CMD ARGS... — run CMD with libmemalloc preloaded.
#
# Builds the release library first (cargo build --release, quietly) when
# target/release/libmemalloc.so is missing or older than any file in src/ or
# Cargo.toml, then execs CMD with LD_PRELOAD=<absolute path of the .so>
# prepended to any existing LD_PRELOAD. Works from any working directory.
# `scripts/run.sh --build` only brings the library up to date and prints
# its path.
#
# Environment:
#   MEMALLOC_LIB=/path/to/lib.so   preload this library instead (no build);
#                                  used to validate scripts against another
#                                  allocator, e.g. jemalloc.
set -uo pipefail

usage() {
    cat >&2 <<'EOF'
usage: scripts/run.sh CMD [ARGS...]
       scripts/run.sh --build

Runs CMD with libmemalloc.so preloaded (LD_PRELOAD), building the release
library first if it is missing or out of date. With --build, only brings
the library up to date and prints its path.

  MEMALLOC_LIB=/path/lib.so   preload that library instead, without building
EOF
}

if [[ $# -eq 0 ]]; then
    usage
    exit 2
fi
BUILD_ONLY=0
case "$1" in
    -h | --help) usage; exit 0 ;;
    --build) BUILD_ONLY=1 ;;
esac

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"

if [[ -n "${MEMALLOC_LIB:-}" ]]; then
    if [[ ! -f "$MEMALLOC_LIB" ]]; then
        echo "run.sh: MEMALLOC_LIB=$MEMALLOC_LIB: no such file" >&2
        exit 1
    fi
    LIB="$(cd "$(dirname "$MEMALLOC_LIB")" && pwd -P)/$(basename "$MEMALLOC_LIB")"
else
    LIB="$ROOT/target/release/libmemalloc.so"
    # cargo may be installed for the user but not on a non-login PATH.
    if ! command -v cargo >/dev/null 2>&1 && [[ -x "$HOME/.cargo/bin/cargo" ]]; then
        PATH="$HOME/.cargo/bin:$PATH"
    fi
    stale=0
    if [[ ! -f "$LIB" ]]; then
        stale=1
    elif [[ -n "$(find "$ROOT/src" "$ROOT/Cargo.toml" -newer "$LIB" -print -quit 2>/dev/null)" ]]; then
        stale=1
    fi
    if [[ $stale -eq 1 ]]; then
        if ! (cd "$ROOT" && cargo build --release --quiet </dev/null >&2); then
            echo "run.sh: cargo build --release failed" >&2
            exit 1
        fi
        if [[ ! -f "$LIB" ]]; then
            echo "run.sh: build succeeded but $LIB does not exist" >&2
            exit 1
        fi
        # cargo leaves the .so alone when a changed file is not part of the
        # crate; touch it so that such a file does not re-trigger a build on
        # every run.
        touch "$LIB"
    fi
fi

if [[ $BUILD_ONLY -eq 1 ]]; then
    echo "$LIB"
    exit 0
fi

export LD_PRELOAD="$LIB${LD_PRELOAD:+:$LD_PRELOAD}"
exec "$@"
