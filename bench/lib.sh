# lib.sh -- shared by the benchmark scripts (sourced, not run).

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
