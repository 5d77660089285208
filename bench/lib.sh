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
