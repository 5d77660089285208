/* safetensors.h -- model weights in the safetensors format (https://huggingface.co/docs/
 * safetensors): an 8-byte little-endian header length, a JSON header naming each tensor's
 * dtype, shape and byte range, then the raw little-endian data. Names and shapes are those of
 * PyTorch's nn.Sequential state_dict for the same layer list, so files move both ways. */
#ifndef DP_SAFETENSORS_H
#define DP_SAFETENSORS_H

#include "base/error.h"
#include "engine/model.h"

/* Writes the model's state_dict (host[n_params]: parameters and buffers) to path: each tensor
 * as F32, except those that hold whole numbers (dp_tensor_info.int64: num_batches_tracked) as
 * I64 (8-byte little-endian integers converted from the floats), each with its true shape ([]
 * for a scalar). Refuses an I64 tensor whose floats are not whole numbers from 0 to 2^24. The
 * file is written to a temporary file beside it, fsynced, then renamed over path, so path is
 * either the old file or the complete new one. */
int dp_safetensors_save(const char *path, const dp_model *m, const float *host, dp_err *err);

/* Reads path into host[n_params], requiring exactly the model's tensor names with the same
 * shapes and dtypes (F32; I64 for the int64 tensors), their data tiling the data section
 * (sorted by offset: from 0, each where the previous ended, the last at the end; each tensor
 * its own element size), every F32 value finite and every I64 value from 0 to 2^24 (a float
 * holds whole numbers exactly only up to there). Every size and offset is checked before
 * use. */
int dp_safetensors_load(const char *path, const dp_model *m, float *host, dp_err *err);

/* The same for per-parameter state of `n_slots` slots (an optimizer's: host[n_slots][n_params]),
 * each tensor named after its parameter and the slot: "0.weight.momentum_buffer", all F32. Only
 * trained tensors have state (PyTorch's optimizer has none for a buffer): the file lists no
 * buffer, and loading sets the buffers' slots to 0. */
int dp_safetensors_save_state(const char *path, const dp_model *m, int n_slots,
                              const char *const *slots, const float *host, dp_err *err);
int dp_safetensors_load_state(const char *path, const dp_model *m, int n_slots,
                              const char *const *slots, float *host, dp_err *err);

/* Parses a safetensors image held in memory (the work of dp_safetensors_load after reading the
 * file; the fuzz target calls it directly). `what` names the source in messages. */
int dp_safetensors_parse(const unsigned char *buf, size_t len, const char *what,
                         const dp_model *m, float *host, dp_err *err);

#endif
