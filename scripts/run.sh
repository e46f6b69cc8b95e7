#!/usr/bin/env bash
# scripts/run.sh [OPTIONS] CMD ARGS... — run CMD with libmemalloc preloaded.
#
# Builds the release library first (cargo build --release, quietly) when
# target/release/libmemalloc.so is missing or older than any file in src/ or
# Cargo.toml, then runs CMD with LD_PRELOAD=<absolute path of the .so>
# prepended to any existing LD_PRELOAD. Works from any working directory.
# `scripts/run.sh --build` only brings the library up to date and prints
# its path.
#
# Options (before CMD; `--` ends them):
#   --stats            MEMALLOC_STATS=1: the library prints a summary on
#                      stderr at exit
#   --trace FILE       MEMALLOC_TRACE=FILE (emptied first): one line per heap
#                      size change; after CMD, scripts/plot_trace draws
#                      FILE.svg
#   --heapmap OUT.svg  MEMALLOC_DUMP=<temp file>: a heap dump at exit, which
#                      scripts/heapmap draws into OUT.svg
#   --profile OUT.svg  MEMALLOC_PROF=1 (the heap profiler, docs/profiler.md):
#                      scripts/memprof draws the bytes live at the peak into
#                      OUT.svg and those still live at exit into OUT.leak.svg
#                      (with inferno-flamegraph), and keeps the symbolized
#                      stacks in OUT.{peak,leak,total}.folded
# Without --trace, --heapmap and --profile, CMD is exec'd. With one, CMD runs as a
# child (only CMD gets LD_PRELOAD and the MEMALLOC_ variables, not the
# drawing scripts); the pictures are drawn after it exits, even when it failed
# or was interrupted with Ctrl-C; run.sh exits with CMD's status. Every
# process CMD starts inherits the variables: the trace gathers the lines of
# all of them (plot_trace draws each restart of the clock as a new run), and
# the heap map shows the dump of the process that exits last (usually CMD).
#
# Environment:
#   MEMALLOC_LIB=/path/to/lib.so   preload this library instead (no build);
#                                  used to validate scripts against another
#                                  allocator, e.g. jemalloc.
set -uo pipefail

usage() {
    cat >&2 <<'EOF'
usage: scripts/run.sh [--stats] [--trace FILE] [--heapmap OUT.svg] [--profile OUT.svg] [--] CMD [ARGS...]
       scripts/run.sh --build

Runs CMD with libmemalloc.so preloaded (LD_PRELOAD), building the release
library first if it is missing or out of date. With --build, only brings
the library up to date and prints its path.

  --stats            print the library's statistics on stderr when CMD exits
                     (MEMALLOC_STATS=1)
  --trace FILE       record the heap size over time in FILE (MEMALLOC_TRACE;
                     FILE is emptied first), then plot it into FILE.svg
  --heapmap OUT.svg  dump the heap when CMD exits (MEMALLOC_DUMP), then draw
                     it into OUT.svg
  --profile OUT.svg  profile the heap (MEMALLOC_PROF=1), then draw the flame
                     graph of the bytes live at the peak into OUT.svg and of
                     those live at exit (leaks) into OUT.leak.svg
  With --trace, --heapmap or --profile, CMD runs as a child and run.sh exits with its
  exit status.

  MEMALLOC_LIB=/path/lib.so   preload that library instead, without building
EOF
}

BUILD_ONLY=0
STATS=0
TRACE=
HEAPMAP=
PROFILE=
while [[ $# -gt 0 ]]; do
    case "$1" in
        -h | --help) usage; exit 0 ;;
        --build) BUILD_ONLY=1; shift ;;
        --stats) STATS=1; shift ;;
        --trace | --heapmap | --profile)
            if [[ $# -lt 2 || -z "$2" ]]; then
                echo "run.sh: $1 needs a file name" >&2
                usage
                exit 2
            fi
            case "$1" in
                --trace) TRACE="$2" ;;
                --heapmap) HEAPMAP="$2" ;;
                *) PROFILE="$2" ;;
            esac
            shift 2
            ;;
        --trace=?*) TRACE="${1#--trace=}"; shift ;;
        --heapmap=?*) HEAPMAP="${1#--heapmap=}"; shift ;;
        --profile=?*) PROFILE="${1#--profile=}"; shift ;;
        --) shift; break ;;
        -*)
            echo "run.sh: unknown option $1 (options go before CMD; put -- before a CMD that starts with -)" >&2
            usage
            exit 2
            ;;
        *) break ;;
    esac
done
if [[ $BUILD_ONLY -eq 0 && $# -eq 0 ]]; then
    usage
    exit 2
fi

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

ENVS=("LD_PRELOAD=$LIB${LD_PRELOAD:+:$LD_PRELOAD}")
[[ $STATS -eq 1 ]] && ENVS+=(MEMALLOC_STATS=1)

if [[ -z "$TRACE" && -z "$HEAPMAP" && -z "$PROFILE" ]]; then
    export "${ENVS[@]}"
    exec "$@"
fi

# The library opens these paths from CMD's working directory, which CMD may
# change: make them absolute.
absolute() {
    case "$1" in
        /*) printf '%s\n' "$1" ;;
        *) printf '%s\n' "$PWD/$1" ;;
    esac
}

DUMP=
PROFDIR=
trap '[[ -n "$DUMP" ]] && rm -f "$DUMP"; [[ -n "$PROFDIR" ]] && rm -rf "$PROFDIR"' EXIT
if [[ -n "$TRACE" ]]; then
    TRACE="$(absolute "$TRACE")"
    # The library appends; a trace of this run starts empty.
    if ! : >"$TRACE"; then
        echo "run.sh: cannot write the trace file $TRACE" >&2
        exit 1
    fi
    ENVS+=("MEMALLOC_TRACE=$TRACE")
fi
if [[ -n "$HEAPMAP" ]]; then
    HEAPMAP="$(absolute "$HEAPMAP")"
    if ! DUMP="$(mktemp "${TMPDIR:-/tmp}/memalloc-dump.XXXXXX")"; then
        echo "run.sh: cannot create a temporary file for the heap dump" >&2
        exit 1
    fi
    ENVS+=("MEMALLOC_DUMP=$DUMP")
fi
if [[ -n "$PROFILE" ]]; then
    PROFILE="$(absolute "$PROFILE")"
    if ! PROFDIR="$(mktemp -d "${TMPDIR:-/tmp}/memalloc-prof.XXXXXX")"; then
        echo "run.sh: cannot create a temporary directory for the profile" >&2
        exit 1
    fi
    ENVS+=(MEMALLOC_PROF=1 "MEMALLOC_PROF_OUT=$PROFDIR/p")
fi

# Only CMD gets the variables: a subshell exports them and execs CMD. (`env
# VAR=... CMD` would run env itself preloaded, and its heap would write to
# the trace before the exec.) Ctrl-C stops CMD, not the drawing after it:
# the trap is reset to the default in CMD by the exec.
trap ':' INT
(export "${ENVS[@]}" && { [[ -z "$PROFDIR" ]] || echo "$BASHPID" >"$PROFDIR/pid"; } && exec "$@")
rc=$?
trap - INT

# The command, shortened, names the pictures.
NAME="$*"
[[ ${#NAME} -gt 80 ]] && NAME="${NAME:0:77}..."
if [[ -n "$TRACE" ]]; then
    if [[ -s "$TRACE" ]]; then
        python3 "$ROOT/scripts/plot_trace" --name "$NAME" "$TRACE" "$TRACE.svg" ||
            echo "run.sh: could not plot $TRACE" >&2
    else
        echo "run.sh: $TRACE is empty: no trace was written (CMD did not start, or $LIB does not know MEMALLOC_TRACE)" >&2
    fi
fi
if [[ -n "$HEAPMAP" ]]; then
    if [[ -s "$DUMP" ]]; then
        python3 "$ROOT/scripts/heapmap" --name "$NAME" "$DUMP" "$HEAPMAP" ||
            echo "run.sh: could not draw the heap map $HEAPMAP" >&2
    else
        echo "run.sh: no heap dump was written, so no $HEAPMAP (CMD killed by a signal or did not start, or $LIB does not know MEMALLOC_DUMP)" >&2
    fi
fi
if [[ -n "$PROFILE" ]]; then
    # The profile of CMD itself (its children write their own, by pid).
    pid="$(cat "$PROFDIR/pid" 2>/dev/null)"
    if [[ -n "$pid" && -s "$PROFDIR/p.$pid.total" ]]; then
        bash "$ROOT/scripts/ensure_tools.sh" addr2line=binutils inferno-flamegraph=cargo:inferno >&2 ||
            echo "run.sh: could not install the flame-graph tool" >&2
        python3 "$ROOT/scripts/memprof" draw "$PROFDIR/p.$pid" "$PROFILE" --title "$NAME" ||
            echo "run.sh: could not draw the profile $PROFILE" >&2
    else
        echo "run.sh: no heap profile was written, so no $PROFILE (CMD killed by a signal, exited with _exit, or did not start, or $LIB does not know MEMALLOC_PROF)" >&2
    fi
fi
exit $rc
