# lib.sh -- shared by the end-to-end test scripts (sourced, not run).
# make check sets DPMPTOP (the binary), srcdir and TMPDIR_BASE; the defaults let a script run
# by hand from the source root.
set -u
DPMPTOP=${DPMPTOP:-./dpmptop}
srcdir=${srcdir:-.}
base=${TMPDIR_BASE:-/tmp}
mkdir -p "$base"
work=$(mktemp -d "$base/$(basename "$0" .sh).XXXXXX")
failures=0

# Reports a failed check and remembers it; the script exits 1 at the end.
fail() {
    echo "FAIL: $*" >&2
    failures=$((failures + 1))
}

# expect_exit CODE PATTERN -- COMMAND...: runs COMMAND, requires exit status CODE and, unless
# PATTERN is empty, a line of stderr matching PATTERN (grep -E). stderr is kept in $work/err.
expect_exit() {
    want=$1 pattern=$2
    shift 3
    "$@" >"$work/out" 2>"$work/err" </dev/null
    got=$?
    if [ "$got" -ne "$want" ]; then
        fail "exit $got (wanted $want): $*"
        sed 's/^/    stderr: /' "$work/err" >&2
        return
    fi
    if [ -n "$pattern" ] && ! grep -Eq -- "$pattern" "$work/err"; then
        fail "stderr lacks /$pattern/: $*"
        sed 's/^/    stderr: /' "$work/err" >&2
    fi
}

# Ends the script: 0 when every check passed.
finish() {
    if [ "$failures" -ne 0 ]; then
        echo "$failures check(s) failed; files kept in $work" >&2
        exit 1
    fi
    rm -rf "$work"
    exit 0
}
