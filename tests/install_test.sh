#!/usr/bin/env bash
# tests/install_test.sh — scripts/install.sh, and C programs built from what
# it installs.
#
# Installs into a temporary prefix, then:
#   * the five files are there, and pkg-config reads memalloc.pc;
#   * a C program that uses malloc and memalloc.h's extensions, built with
#     `cc $(pkg-config --cflags --libs memalloc)` and an rpath, runs on the
#     installed libmemalloc.so (ldd says so; its mallocs show in
#     memalloc_get_stats; memalloc_check() returns 0);
#   * the same program linked with libmemalloc.a (`pkg-config --static`)
#     runs without libmemalloc.so and exports malloc to the C library;
#   * DESTDIR stages the files while memalloc.pc names the final prefix;
#     a relative PREFIX is made absolute.
# Installs pkg-config if missing. Keeps the temp dir with
# MEMALLOC_KEEP_TMP=1. Ends with `N passed, M failed`; exit 1 on a failure.
set -uo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)"
ROOT="$(cd "$HERE/.." && pwd -P)"
SCRIPTS="$ROOT/scripts"

bash "$SCRIPTS/ensure_tools.sh" pkg-config=pkg-config cc=gcc ldd=libc-bin \
    nm=binutils readelf=binutils || {
    echo "install_test: the tools it needs could not be installed"
    echo "0 passed, 1 failed"
    exit 1
}

# shellcheck source=tests/lib.sh
source "$ROOT/tests/lib.sh"

TMP="$(mktemp -d "${TMPDIR:-/tmp}/memalloc-install.XXXXXX")"
if [[ "${MEMALLOC_KEEP_TMP:-0}" == 1 ]]; then
    echo "install_test: keeping $TMP"
else
    trap 'rm -rf "$TMP"' EXIT
fi
PREFIX="$TMP/prefix"
LOG="$TMP/log"
VERSION="$(sed -n 's/^version *= *"\(.*\)".*/\1/p' "$ROOT/Cargo.toml" | head -n 1)"

show_log() { sed 's/^/    /' "$LOG" | tail -n 20; }

# ----------------------------------------------------------- install it ---
if bash "$SCRIPTS/install.sh" "$PREFIX" >"$LOG" 2>&1; then
    ok "install.sh $PREFIX"
else
    fail "install.sh $PREFIX exited $?"
    show_log
fi
for f in lib/libmemalloc.so lib/libmemalloc.a include/memalloc.h include/memalloc-new-delete.h \
    lib/pkgconfig/memalloc.pc; do
    check "installed $f" test -s "$PREFIX/$f"
    check "install.sh named $f" grep -q "$PREFIX/$f" "$LOG"
done
check "the installed header is include/memalloc.h" cmp -s "$ROOT/include/memalloc.h" "$PREFIX/include/memalloc.h"

export PKG_CONFIG_PATH="$PREFIX/lib/pkgconfig"
pc() { pkg-config "$@" memalloc; }
check "pkg-config finds memalloc" pc --exists
check "pkg-config --modversion is $VERSION" test "$(pc --modversion 2>&1)" = "$VERSION"
check "pkg-config --cflags is -I$PREFIX/include" \
    test "$(pc --cflags 2>&1 | xargs)" = "-I$PREFIX/include"
check "pkg-config --libs is -L$PREFIX/lib -lmemalloc" \
    test "$(pc --libs 2>&1 | xargs)" = "-L$PREFIX/lib -lmemalloc"
static_libs="$(pc --static --libs 2>&1 | xargs)"
check "pkg-config --static --libs adds what a Rust staticlib needs ($static_libs)" \
    bash -c '[[ " $1 " == *" -lmemalloc "* && " $1 " == *" -lc "* && " $1 " != *" -lgcc_s "* ]]' _ "$static_libs"

# ------------------------------------------------------ a C program ---
cat >"$TMP/prog.c" <<'EOF'
/* Uses the installed library: malloc must come from it. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <memalloc.h>

int main(void) {
    struct memalloc_stats before, after;
    memalloc_get_stats(&before);
    enum { N = 1000 };
    static void *p[N];
    size_t want = 0;
    for (int i = 0; i < N; i++) {
        size_t n = (size_t)16 << (i % 14);      /* 16 B .. 128 KiB */
        p[i] = malloc(n);
        if (!p[i]) { printf("malloc(%zu) failed\n", n); return 1; }
        memset(p[i], i, n);
        want += n;
    }
    char *big = malloc(4 << 20);                /* a large block */
    if (!big) { printf("malloc(4 MiB) failed\n"); return 1; }
    big[0] = big[(4 << 20) - 1] = 1;
    memalloc_get_stats(&after);
    size_t bad = memalloc_check();
    printf("in_use=%zu grew=%zu want=%zu large_count=%zu check=%zu\n",
           after.in_use, after.in_use - before.in_use, want + (4 << 20),
           after.large_count, bad);
    for (int i = 0; i < N; i += 2) free(p[i]);
    free(big);
    if (memalloc_check() != 0) { printf("check after free failed\n"); return 1; }
    if (after.in_use == 0 || after.in_use - before.in_use < want + (4 << 20)) {
        printf("these mallocs did not come from memalloc\n");
        return 1;
    }
    if (bad != 0) return 1;
    printf("ok\n");
    return 0;
}
EOF

# ---- shared
SHARED="$TMP/prog_shared"
if cc -O1 -Wall "$TMP/prog.c" -o "$SHARED" $(pc --cflags --libs) -Wl,-rpath,"$PREFIX/lib" >"$LOG" 2>&1; then
    ok "cc prog.c \$(pkg-config --cflags --libs memalloc)"
    [[ -s "$LOG" ]] && show_log
else
    fail "cc prog.c \$(pkg-config --cflags --libs memalloc)"
    show_log
fi
if [[ -x "$SHARED" ]]; then
    check "the shared build needs libmemalloc.so" \
        bash -c 'readelf -d "$1" | grep -q "NEEDED.*\[libmemalloc\.so\]"' _ "$SHARED"
    check "ldd resolves libmemalloc.so to $PREFIX/lib" \
        bash -c 'ldd "$1" | grep -q "libmemalloc\.so => $2/lib/libmemalloc\.so "' _ "$SHARED" "$PREFIX"
    if out="$("$SHARED" 2>&1)" && [[ "$out" == *$'\nok' ]]; then
        ok "the shared build runs on the installed library: ${out%%$'\n'*}"
    else
        fail "the shared build: $out"
    fi
fi

# ---- static
STATIC="$TMP/prog_static"
static_flags="$(pc --static --libs | sed 's/-lmemalloc\b/-l:libmemalloc.a/')"
if cc -O1 -Wall "$TMP/prog.c" -o "$STATIC" $(pc --cflags) $static_flags >"$LOG" 2>&1; then
    ok "cc prog.c \$(pkg-config --static --libs memalloc) with libmemalloc.a"
    [[ -s "$LOG" ]] && show_log
else
    fail "cc prog.c \$(pkg-config --static --libs memalloc) with libmemalloc.a"
    show_log
fi
if [[ -x "$STATIC" ]]; then
    check "the static build does not need libmemalloc.so" \
        bash -c '! readelf -d "$1" | grep -q "libmemalloc"' _ "$STATIC"
    # The C library calls malloc through the PLT: the program must export
    # it, or libc's own allocations go to glibc's heap.
    check "the static build exports malloc and free to the C library" \
        bash -c 'nm -D --defined-only "$1" | grep -q " T malloc$" && nm -D --defined-only "$1" | grep -q " T free$"' _ "$STATIC"
    if out="$(env -u LD_PRELOAD "$STATIC" 2>&1)" && [[ "$out" == *$'\nok' ]]; then
        ok "the static build runs: ${out%%$'\n'*}"
    else
        fail "the static build: $out"
    fi
fi

# ----------------------------------------------------- DESTDIR, relative ---
STAGE="$TMP/stage"
FINAL="/opt/memalloc-install-test-$$"
if DESTDIR="$STAGE" bash "$SCRIPTS/install.sh" "$FINAL" >"$LOG" 2>&1; then
    ok "DESTDIR=$STAGE install.sh $FINAL"
else
    fail "DESTDIR=$STAGE install.sh $FINAL"
    show_log
fi
check "DESTDIR: the files are staged under DESTDIR" \
    test -s "$STAGE$FINAL/lib/libmemalloc.so" -a -s "$STAGE$FINAL/lib/pkgconfig/memalloc.pc"
check "DESTDIR: memalloc.pc names the final prefix" grep -qx "prefix=$FINAL" "$STAGE$FINAL/lib/pkgconfig/memalloc.pc"
check "DESTDIR: nothing written to $FINAL itself" test ! -e "$FINAL"

mkdir -p "$TMP/cwd"
if (cd "$TMP/cwd" && bash "$SCRIPTS/install.sh" rel >"$LOG" 2>&1); then
    check "a relative PREFIX becomes absolute in memalloc.pc" \
        grep -qx "prefix=$TMP/cwd/rel" "$TMP/cwd/rel/lib/pkgconfig/memalloc.pc"
else
    fail "install.sh rel (a relative prefix)"
    show_log
fi
check "install.sh --help exits 0" bash "$SCRIPTS/install.sh" --help 2>/dev/null
bash "$SCRIPTS/install.sh" --bogus >/dev/null 2>&1
check "install.sh --bogus exits 2" test $? -eq 2

echo "$PASSED passed, $FAILED failed"
[[ $FAILED -eq 0 ]]
