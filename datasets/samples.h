/* samples.h -- a generator's samples (images as floats [n, C, H, W], CHW and row-major as in
 * PyTorch, with values meant to lie in [lo, hi]) written as files: an IDX file of unsigned bytes
 * (the format of the data dpmptop reads: dp_idx_read reads it back) and a PNG grid.
 *
 * The byte a value becomes is torchvision's: make_grid(normalize=True, value_range=(lo, hi))
 * clamps to [lo, hi] and maps it to [0, 1], then save_image computes
 * x.mul(255).add_(0.5).clamp_(0, 255) and converts to uint8 (truncation, so round half up). The
 * same float32 operations in the same order are done here, so the bytes are PyTorch's. With
 * lo = 0 and hi = 1 that is save_image on the raw values. NaN becomes 0; -inf and +inf clamp to
 * 0 and 255.
 *
 * Both writers write atomically: a temporary file beside the path, renamed over it once whole
 * (base/fileio.h). The path must be absent or a regular file: a symbolic link there is refused
 * (dp_atomic_open would write through it, replacing its target, which may lie outside the run's
 * directory), as are a directory, a device and a pipe. On failure the old file is kept. */
#ifndef DP_SAMPLES_H
#define DP_SAMPLES_H

#include <stdint.h>

#include "base/error.h"

/* The largest height or width of one sample, and the most channels (IDX; PNG takes 1 or 3). */
#define DP_SAMPLES_MAX_SIDE 65536
#define DP_SAMPLES_MAX_CHANNELS 4096
/* The grid's padding: torchvision make_grid's default, 2 pixels of 0 between the images and
 * around them. */
#define DP_SAMPLES_PAD 2

/* The byte a value becomes, as above. lo < hi, both finite (the writers check). */
uint8_t dp_samples_byte(float v, float lo, float hi);

/* Writes x[n, c, h, w] as an IDX file of unsigned bytes: magic 0x00000803 and dimensions
 * [n, h, w] when c == 1, else 0x00000804 and [n, c, h, w] (big-endian), then the bytes in x's
 * order. Returns 0, or -1 with err saying what was wrong (arguments, or the file). */
int dp_samples_write_idx(const char *path, const float *x, int n, int c, int h, int w, float lo,
                         float hi, dp_err *err);

/* Writes x[n, c, h, w] as a PNG grid: `cols` images a row (the last row may be short), rows
 * enough for n, DP_SAMPLES_PAD pixels of 0 between and around them (make_grid's layout with
 * nrow = cols, padding = 2, pad_value = 0), 8-bit greyscale for c == 1 and RGB for c == 3; any
 * other c is refused. Unlike make_grid, a single image keeps its padding (make_grid returns a
 * lone image as it is). */
int dp_samples_write_png(const char *path, const float *x, int n, int c, int h, int w, float lo,
                         float hi, int cols, dp_err *err);

/* The grid's size in pixels for n images of h x w, cols a row, `pad` pixels between and around:
 * gw = min(cols, n) * (w + pad) + pad, gh = ceil(n / min(cols, n)) * (h + pad) + pad. Returns -1
 * with err for bad arguments or a grid of more than 2^31 pixels a side or 2^32 in all. */
int dp_samples_grid_size(int n, int h, int w, int cols, int pad, int *gh, int *gw, dp_err *err);

/* Fills grey[gh * gw] (sizes from dp_samples_grid_size) with the grid of x[n, c, h, w] in one
 * grey byte a pixel, padding 0: the byte of each value as above, and for c == 3 the luma of the
 * three bytes (ITU-R 601 weights, rounded: (299 R + 587 G + 114 B + 500) / 1000); other c take
 * the first channel. For the dashboard's picture (tui/picture.h); cols and pad as the
 * caller likes (the dashboard may use 1 pixel gaps). */
int dp_samples_grid_grey(const float *x, int n, int c, int h, int w, float lo, float hi,
                         int cols, int pad, uint8_t *grey, dp_err *err);

#endif
