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

# bench_program NAME: after find_build, dp (the program, rebuilt first when the build has a
# Makefile) and tmp (removed at exit); exits 1, saying so as NAME, without the program.
bench_program() {
    dp=$build/dpmptop
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' EXIT
    if [ -f "$build/Makefile" ]; then
        make -s -C "$build" dpmptop >"$tmp/make.log" 2>&1 ||
            { echo "$1: make failed (using what is built):"; tail -5 "$tmp/make.log"; }
    fi
    [ -x "$dp" ] || { echo "$1: no $dp; build it, or set DPMPTOP_BUILD" >&2; exit 1; }
}

# bench_setup NAME: bench_program, and what a benchmark against PyTorch needs besides: python
# (PyTorch's: $TORCH_PYTHON, default /usr/bin/python3) and cores; exits 1 without torch.
bench_setup() {
    bench_program "$1"
    python=${TORCH_PYTHON:-/usr/bin/python3}
    cores=$(nproc)
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
