#!/bin/sh
# layering.sh -- keeps the structure as built (see ARCHITECTURE.md):
#  1. the libraries depend downwards only: app -> tui -> engine -> datasets -> base. A file
#     may include a header of its own directory or of a directory below it, never above or
#     beside it;
#  2. HAVE_CUDA appears only in the CUDA backend's own files, the configure glue, the tests and
#     the benchmarks: everything else asks the backend table.
# Reads the sources only; needs no build.
set -u
srcdir=${srcdir:-.}
cd "$srcdir" || exit 1
failures=0

rank() {
    case $1 in
        base) echo 0 ;; datasets) echo 1 ;; engine) echo 2 ;; tui) echo 3 ;; app) echo 4 ;;
        *) echo -1 ;;
    esac
}

for dir in base datasets engine tui app; do
    own=$(rank "$dir")
    # every quoted include of every C source and header under dir, as FILE:LINE:TARGET
    for hit in $(grep -rnoE '^#[[:space:]]*include[[:space:]]+"[^"]+"' "$dir" \
                     --include='*.c' --include='*.h' --include='*.cu' |
                 sed -E 's/#[[:space:]]*include[[:space:]]+"([^"]+)"/\1/'); do
        target=${hit##*:}
        case $target in
            */*) ;;
            *) continue ;; # dpmptop-config.h, the build's own header
        esac
        theirs=$(rank "${target%%/*}")
        if [ "$theirs" -lt 0 ] || [ "$theirs" -gt "$own" ]; then
            echo "FAIL: ${hit%:*} includes $target, which is above $dir/ (or outside the order)"
            failures=$((failures + 1))
        fi
    done
done

# The CUDA backend's own files: engine/backend_cuda.*, engine/*_cuda.cu, engine/cuda_impl.h.
for hit in $(grep -rln 'HAVE_CUDA' base datasets engine tui app --include='*.c' --include='*.h'); do
    case $hit in
        engine/backend_cuda.*|engine/*_cuda.cu|engine/cuda_impl.h) ;;
        *) echo "FAIL: $hit mentions HAVE_CUDA: ask the backend table instead"
           grep -n 'HAVE_CUDA' "$hit"
           failures=$((failures + 1)) ;;
    esac
done

if [ "$failures" -gt 0 ]; then
    echo "layering: $failures violation(s)"
    exit 1
fi
echo "layering: includes point down only (app -> tui -> engine -> datasets -> base);" \
     "HAVE_CUDA only in the CUDA backend"
