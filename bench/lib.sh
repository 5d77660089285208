# lib.sh -- shared by the benchmark scripts (sourced, not run).

# find_build [PROGRAM...]: sets src (the source tree the script sits in) and build (where the
# programs are): $DPMPTOP_BUILD, else the current directory when it holds dpmptop and every
# PROGRAM (make bench from a build directory), else the source tree.
find_build() {
    src=$(cd "$(dirname "$0")/.." && pwd)
    build=$src
    if [ -n "${DPMPTOP_BUILD:-}" ]; then
        build=$DPMPTOP_BUILD
        return 0
    fi
    for p in dpmptop "$@"; do
        [ -x "./$p" ] || return 0
    done
    build=$(pwd)
}

# bench_setup NAME: after find_build, what a benchmark against PyTorch needs: dp (the program,
# rebuilt first when the build has a Makefile), python (PyTorch's: $TORCH_PYTHON, default
# /usr/bin/python3), cores, and tmp (removed at exit); exits 1, saying so as NAME, without the
# program or without torch.
bench_setup() {
    dp=$build/dpmptop
    python=${TORCH_PYTHON:-/usr/bin/python3}
    cores=$(nproc)
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' EXIT
    if [ -f "$build/Makefile" ]; then
        make -s -C "$build" dpmptop >"$tmp/make.log" 2>&1 ||
            { echo "$1: make failed (using what is built):"; tail -5 "$tmp/make.log"; }
    fi
    [ -x "$dp" ] || { echo "$1: no $dp; build it, or set DPMPTOP_BUILD" >&2; exit 1; }
    "$python" -c 'import torch' 2>/dev/null ||
        { echo "$1: $python has no torch (apt-get install python3-torch)" >&2; exit 1; }
}

# table: '|'-separated rows on stdin, printed in aligned columns.
table() {
    awk -F'|' '
        {
            for (i = 1; i <= NF; i++) {
                c[NR, i] = $i
                if (length($i) > w[i]) w[i] = length($i)
            }
            if (NF > nf) nf = NF
        }
        END {
            for (r = 1; r <= NR; r++) {
                s = ""
                for (i = 1; i <= nf; i++) s = s sprintf("%-" w[i] "s  ", c[r, i])
                sub(/ +$/, "", s)
                print s
            }
        }'
}
