# tests/lib.sh — the check helpers the shell test scripts share (sourced).
#   ok DESC / fail DESC      count a passed / failed check and print it
#   check DESC COMMAND...    one check from a command's exit status
PASSED=0
FAILED=0
ok() { echo "ok   $*"; PASSED=$((PASSED + 1)); }
fail() { echo "FAIL $*"; FAILED=$((FAILED + 1)); }
check() {
    local desc="$1"
    shift
    if "$@"; then ok "$desc"; else fail "$desc"; fi
}
