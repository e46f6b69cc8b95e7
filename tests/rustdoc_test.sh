#!/usr/bin/env bash
# tests/rustdoc_test.sh — the memalloc crate's rustdoc shows its API only.
#
# Builds the crate's documentation (cargo doc --no-deps, into a directory of
# its own) and checks that the crate root lists the `api` module and the
# items it re-exports (MemAlloc, Pool, Stats, stats, check, dump), and no
# other module: the internal modules are `pub` for capi/ and the tests, but
# `#[doc(hidden)]`. Ends with `N passed, M failed`; exit 1 on a failure.
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
out="$ROOT/target/rustdoc_test"
passed=0 failed=0
ok() { echo "PASS $1"; passed=$((passed + 1)); }
fail() { echo "FAIL $1"; failed=$((failed + 1)); }

if ! (cd "$ROOT" && cargo doc -p memalloc --no-deps --target-dir "$out" >"$out.log" 2>&1); then
    fail "cargo doc -p memalloc"
    tail -20 "$out.log" | sed 's/^/    /'
    echo "$passed passed, $failed failed"
    exit 1
fi
index="$out/doc/memalloc/index.html"
# The modules the root page links to: href="NAME/index.html".
mods=$(grep -o 'href="[a-z_0-9]*/index.html"' "$index" | sed 's/href="//; s/\/index.html"//' | sort -u | tr '\n' ' ')
if [[ "$mods" == "api " ]]; then
    ok "the crate root lists one module, api"
else
    fail "the crate root lists the modules: $mods(expected only api)"
fi
for item in struct.MemAlloc struct.Pool struct.Stats fn.stats fn.check fn.dump; do
    if grep -q "\"$item.html\"\|/$item.html\"" "$index"; then
        ok "the crate root lists ${item#*.}"
    else
        fail "the crate root does not list ${item#*.}"
    fi
done
echo "$passed passed, $failed failed"
[[ $failed -eq 0 ]]
