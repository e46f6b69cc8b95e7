#!/usr/bin/env bash
# scripts/ensure_tools.sh CMD=PACKAGE ... — install Debian packages for
# commands that are absent.
#
# Each argument names a command and the Debian package that provides it
# (e.g. `xz=xz-utils`), or `cargo:CRATE` for a command that a crate installs
# with `cargo install --locked` (e.g. `inferno-flamegraph=cargo:inferno`). Commands already on PATH are left alone; for the
# rest, the packages are installed quietly with apt-get (running
# `apt-get update` only if the first attempt fails). Prints what it installs.
# Exits 0 when every command is available afterwards, 1 otherwise (listing
# what is still missing).
set -uo pipefail

missing_cmds=()
missing_pkgs=()
[[ -d "$HOME/.cargo/bin" ]] && PATH="$PATH:$HOME/.cargo/bin"
for pair in "$@"; do
    cmd="${pair%%=*}"
    pkg="${pair#*=}"
    [[ -z "$pkg" || "$pkg" == "$pair" ]] && pkg="$cmd"
    if [[ "$pkg" == cargo:* ]]; then
        command -v "$cmd" >/dev/null 2>&1 && continue
        echo "ensure_tools: missing $cmd; cargo install --locked ${pkg#cargo:}" >&2
        if ! command -v cargo >/dev/null 2>&1 || ! cargo install --locked --quiet "${pkg#cargo:}" >&2 ||
            ! command -v "$cmd" >/dev/null 2>&1; then
            echo "ensure_tools: could not install $cmd with cargo" >&2
            exit 1
        fi
        continue
    fi
    if ! command -v "$cmd" >/dev/null 2>&1; then
        missing_cmds+=("$cmd")
        # De-duplicate packages (several commands may share one).
        case " ${missing_pkgs[*]:-} " in
            *" $pkg "*) ;;
            *) missing_pkgs+=("$pkg") ;;
        esac
    fi
done

[[ ${#missing_cmds[@]} -eq 0 ]] && exit 0

echo "ensure_tools: missing ${missing_cmds[*]}; installing ${missing_pkgs[*]}" >&2

SUDO=()
if [[ "$(id -u)" -ne 0 ]]; then
    if command -v sudo >/dev/null 2>&1; then
        SUDO=(sudo -n)
    else
        echo "ensure_tools: not root and no sudo; cannot install ${missing_pkgs[*]}" >&2
        exit 1
    fi
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "ensure_tools: apt-get not available; cannot install ${missing_pkgs[*]}" >&2
    exit 1
fi

log="$(mktemp)"
trap 'rm -f "$log"' EXIT
apt_install() {
    "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
        -o DPkg::Lock::Timeout=600 "${missing_pkgs[@]}" \
        </dev/null >>"$log" 2>&1
}
if ! apt_install; then
    # Package lists may be absent or stale on a fresh machine.
    "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q \
        -o DPkg::Lock::Timeout=600 </dev/null >>"$log" 2>&1
    apt_install
fi

still=()
for cmd in "${missing_cmds[@]}"; do
    command -v "$cmd" >/dev/null 2>&1 || still+=("$cmd")
done
if [[ ${#still[@]} -gt 0 ]]; then
    echo "ensure_tools: still missing after install: ${still[*]}" >&2
    tail -n 20 "$log" >&2
    exit 1
fi
exit 0
