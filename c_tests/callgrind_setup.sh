# c_tests/callgrind_setup.sh - the set-up shared by the callgrind tests
# (bursts.sh, classes.sh, xfree.sh), sourced after `here` is set:
#
#   . "$here/callgrind_setup.sh" NAME [extra gcc flags...]
#
# sets root, lib (target/release/libmemalloc.so, which must exist), out
# (target/c_tests/NAME), passed=0 and failed=0; installs gcc and valgrind if
# missing; builds c_tests/NAME.c into $out/NAME, or reports the build's
# failure and exits 1.
name=$1
shift
root=$(cd "$here/.." && pwd)
lib=$root/target/release/libmemalloc.so
out=$root/target/c_tests/$name
if [ ! -f "$lib" ]; then
    echo "$name.sh: $lib not found: run 'cargo build --release' first" >&2
    exit 2
fi
bash "$root/scripts/ensure_tools.sh" gcc=gcc valgrind=valgrind || exit 2
mkdir -p "$out"
passed=0
failed=0
if ! gcc -O2 -g -Wall -Wextra -fno-builtin "$@" -o "$out/$name" "$here/$name.c" 2>"$out/build.log"; then
    echo "FAIL $name: build failed"
    sed 's/^/    /' "$out/build.log" | head -20
    echo "0 passed, 1 failed"
    exit 1
fi
