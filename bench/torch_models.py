"""torch_models.py -- dpmptop's [model] layers syntax as PyTorch modules.

build(layers, in_shape, classes) returns an nn.Sequential whose state_dict() has exactly the
names and shapes of the tensors dpmptop saves for the same list (its safetensors files), so
weights move both ways with load_state_dict(strict=True). in_shape is one sample's shape:
(C, H, W) for images, (N,) for vectors, (T,) for the byte ids of text (for embed).

    import torch_models
    model = torch_models.build("conv:8:3:1:1, relu, res(conv:8:3:1:1), avgpool, linear:10",
                               (3, 32, 32), 10)

The model's output is [batch, classes], or [batch, T, classes] for sequences; dpmptop's loss is
cross-entropy averaged over every target. Images given to linear are flattened first, as
dpmptop does; res's shortcut is a 1x1 convolution (images) or a linear layer (vectors,
sequences) when the body changes the shape. save_safetensors and load_safetensors write and
read dpmptop's weight files (F32) without the safetensors package.

A GAN ([model] objective = gan): build_gan(generator, discriminator, latent, image) returns G
and D, each an nn.Sequential named as dpmptop's generator.safetensors and
discriminator.safetensors (app/gan.h); latent_shape("100:1:1") reads [model] latent.
gan_noise(seed, purpose, step, sample0, rows, z) draws the latent vectors dpmptop draws
(engine/kernels.h: dp_noise_value), bit for bit, as a float32 numpy array.

BERT-style encoders: enc:H[:NF] is nn.TransformerEncoderLayer(d, H, 4d, dropout=0,
activation="gelu", batch_first=True, norm_first=NF), mha:H nn.MultiheadAttention(d, H,
batch_first=True) as self-attention, gelu_erf nn.GELU() (exact). A masked language model
([model] objective = mlm): mlm_mask(seed, purpose, step, sample0, x) gives a batch's masked
inputs and labels (-1 where not chosen) as dpmptop's dp_mlm_input draws them, bit for bit.
"""
import json
import math
import struct

import numpy as np
import torch
import torch.nn as nn


class FlatLinear(nn.Linear):
    """linear on images: dpmptop flattens them first (without a layer index of its own)."""

    def forward(self, x):
        return super().forward(x.flatten(1))


class Pos(nn.Module):
    """pos: adds a learned vector per position, nn.Embedding(T, D) of 0..T-1."""

    def __init__(self, t, d):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(t, d))

    def forward(self, x):
        return x + self.weight


class CausalSelfAttention(nn.Module):
    """attn:H, as nanoGPT's (no dropout): q, k, v from c_attn, head h takes columns
    h*hd:(h+1)*hd of each, causal softmax(q k^T / sqrt(hd)) v, heads mixed by c_proj."""

    def __init__(self, d, heads):
        super().__init__()
        self.heads = heads
        self.c_attn = nn.Linear(d, 3 * d)
        self.c_proj = nn.Linear(d, d)

    def forward(self, x):
        b, t, d = x.shape
        q, k, v = self.c_attn(x).split(d, dim=2)
        q, k, v = (z.view(b, t, self.heads, d // self.heads).transpose(1, 2) for z in (q, k, v))
        att = q @ k.transpose(-2, -1) / math.sqrt(d // self.heads)
        mask = torch.ones(t, t, dtype=torch.bool).tril()
        att = att.masked_fill(~mask, float("-inf")).softmax(dim=-1)
        return self.c_proj((att @ v).transpose(1, 2).reshape(b, t, d))


class MHA(nn.MultiheadAttention):
    """mha:H, non-causal self-attention as nn.MultiheadAttention(d, h, batch_first=True): its
    state_dict names are dpmptop's for a bare mha layer (N.in_proj_weight, N.in_proj_bias,
    N.out_proj.weight, N.out_proj.bias)."""

    def __init__(self, d, heads):
        super().__init__(d, heads, batch_first=True)

    def forward(self, x):
        return super().forward(x, x, x, need_weights=False)[0]


def encoder_layer(d, heads, norm_first):
    """enc:H[:NF], BERT's block: nn.TransformerEncoderLayer with a 4d feed-forward, exact GELU
    and no dropout, post-LayerNorm unless norm_first."""
    return nn.TransformerEncoderLayer(d, heads, 4 * d, dropout=0.0, activation="gelu",
                                      batch_first=True, norm_first=norm_first)


class MLP(nn.Module):
    def __init__(self, d):
        super().__init__()
        self.c_fc = nn.Linear(d, 4 * d)
        self.gelu = nn.GELU(approximate="tanh")
        self.c_proj = nn.Linear(4 * d, d)

    def forward(self, x):
        return self.c_proj(self.gelu(self.c_fc(x)))


class Block(nn.Module):
    """block:H, a pre-LayerNorm GPT block named as nanoGPT's."""

    def __init__(self, d, heads):
        super().__init__()
        self.ln_1 = nn.LayerNorm(d)
        self.attn = CausalSelfAttention(d, heads)
        self.ln_2 = nn.LayerNorm(d)
        self.mlp = MLP(d)

    def forward(self, x):
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class Res(nn.Module):
    """res(...): body(x) + x, or body(x) + proj(x) when the body changes the shape."""

    def __init__(self, body, proj=None):
        super().__init__()
        self.body = body
        if proj is not None:
            self.proj = proj

    def forward(self, x):
        return self.body(x) + (self.proj(x) if hasattr(self, "proj") else x)


def split_list(spec):
    """The items of a comma-separated layer list, commas inside parentheses kept."""
    items, depth, cur = [], 0, ""
    for ch in spec:
        depth += (ch == "(") - (ch == ")")
        if ch == "," and depth == 0:
            items.append(cur.strip())
            cur = ""
        else:
            cur += ch
    items.append(cur.strip())
    return items


def window(size, k, stride, pad=0):
    return (size + 2 * pad - k) // stride + 1


def layer(item, shape):
    """One layer's module on samples of `shape`, and the shape it gives."""
    if item.startswith("res("):
        if not item.endswith(")"):
            raise ValueError(f"'{item}': the list in parentheses is not closed")
        body, out = layer_list(item[4:-1], shape)
        proj = None
        if out != shape:
            if len(shape) == 3 and len(out) == 3:
                # the smallest stride that takes the input's size to the body's
                s = next((s for s in range(1, shape[1] + 1)
                          if window(shape[1], 1, s) == out[1] and window(shape[2], 1, s) == out[2]),
                         None)
                if s is None:
                    raise ValueError(f"'{item}': no strided 1x1 convolution takes {shape} to {out}")
                proj = nn.Conv2d(shape[0], out[0], 1, stride=s)
            elif len(shape) == len(out) < 3 and (len(shape) == 1 or shape[0] == out[0]):
                proj = nn.Linear(shape[-1], out[-1])
            else:
                raise ValueError(f"'{item}': no projection takes {shape} to {out}")
        return Res(body, proj), out
    name, *args = item.split(":")
    if name == "leakyrelu":  # the one kind whose number may have a fraction
        slope = float(args[0]) if args else 0.01
        if len(args) > 1 or not math.isfinite(slope):
            raise ValueError(f"'{item}': write leakyrelu[:SLOPE] with a finite SLOPE")
        return nn.LeakyReLU(negative_slope=slope), shape
    args = [int(a) for a in args]
    if name == "linear":
        if len(shape) == 3:
            return FlatLinear(math.prod(shape), args[0]), (args[0],)
        return nn.Linear(shape[-1], args[0]), shape[:-1] + (args[0],)
    if name == "conv":
        out, k = args[0], args[1]
        stride = args[2] if len(args) > 2 else 1
        pad = args[3] if len(args) > 3 else 0
        bias = args[4] != 0 if len(args) > 4 else True  # BIAS 0: bias=False
        c, h, w = shape
        return (nn.Conv2d(c, out, k, stride=stride, padding=pad, bias=bias),
                (out, window(h, k, stride, pad), window(w, k, stride, pad)))
    if name in ("maxpool", "avgpool"):
        c, h, w = shape
        if not args:  # global average pooling
            return nn.AdaptiveAvgPool2d(1), (c, 1, 1)
        k = args[0]
        stride = args[1] if len(args) > 1 else k
        pool = nn.MaxPool2d if name == "maxpool" else nn.AvgPool2d
        return pool(k, stride), (c, window(h, k, stride), window(w, k, stride))
    if name == "deconv":
        out, k = args[0], args[1]
        stride = args[2] if len(args) > 2 else 1
        pad = args[3] if len(args) > 3 else 0
        bias = args[4] != 0 if len(args) > 4 else True
        c, h, w = shape
        return (nn.ConvTranspose2d(c, out, k, stride=stride, padding=pad, bias=bias),
                (out, (h - 1) * stride - 2 * pad + k, (w - 1) * stride - 2 * pad + k))
    if name == "flatten":
        return nn.Flatten(), (math.prod(shape),)
    if name == "unflatten":
        c, h, w = args
        if shape != (c * h * w,):
            raise ValueError(f"'{item}' needs vectors of {c * h * w} values, not {shape}")
        return nn.Unflatten(1, (c, h, w)), (c, h, w)
    if name == "bn":  # batch normalisation over the channels of images, or of vectors
        if len(shape) == 3:
            return nn.BatchNorm2d(shape[0], eps=1e-5, momentum=0.1), shape
        if len(shape) == 1:
            return nn.BatchNorm1d(shape[0], eps=1e-5, momentum=0.1), shape
        raise ValueError(f"'{item}': bn takes images or vectors, not sequences {shape}")
    if name in ("relu", "tanh", "gelu", "gelu_erf", "sigmoid"):
        return {"relu": nn.ReLU(), "tanh": nn.Tanh(), "gelu": nn.GELU(approximate="tanh"),
                "gelu_erf": nn.GELU(), "sigmoid": nn.Sigmoid()}[name], shape
    if name == "embed":
        return nn.Embedding(args[0], args[1]), shape + (args[1],)
    if name == "pos":
        return Pos(*shape), shape
    if name == "ln":
        return nn.LayerNorm(shape[-1]), shape
    if name == "attn":
        return CausalSelfAttention(shape[-1], args[0]), shape
    if name == "block":
        return Block(shape[-1], args[0]), shape
    if name == "mha":
        return MHA(shape[-1], args[0]), shape
    if name == "enc":
        if len(args) not in (1, 2) or (len(args) == 2 and args[1] not in (0, 1)):
            raise ValueError(f"'{item}': write enc:HEADS or enc:HEADS:NORM_FIRST (0 or 1)")
        return encoder_layer(shape[-1], args[0], len(args) == 2 and args[1] == 1), shape
    raise ValueError(f"unknown layer '{item}'")


def layer_list(spec, shape):
    mods = []
    for item in split_list(spec):
        m, shape = layer(item, shape)
        mods.append(m)
    return nn.Sequential(*mods), shape


def build(layers, in_shape, classes):
    """The nn.Sequential for dpmptop's layer list on samples of in_shape."""
    model, out = layer_list(layers, tuple(in_shape))
    if out[-1] != classes or len(out) == 3:
        raise ValueError(f"the model gives {out} per sample, not {classes} classes")
    return model


def save_safetensors(path, state):
    """Writes a state_dict as safetensors for dpmptop --init: F32, and I64 for integer tensors
    (batch normalisation's num_batches_tracked)."""
    header, blobs, at = {}, [], 0
    for name, t in state.items():
        t = t.detach().cpu().contiguous()
        if t.dtype == torch.int64:
            dtype, b = "I64", t.numpy().astype("<i8").tobytes()
        else:
            dtype, b = "F32", t.float().numpy().astype("<f4").tobytes()
        header[name] = {"dtype": dtype, "shape": list(t.shape), "data_offsets": [at, at + len(b)]}
        blobs.append(b)
        at += len(b)
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + b"".join(blobs))


def load_safetensors(path):
    """Reads a safetensors file (dpmptop --save: F32, and I64 for num_batches_tracked) into a
    dict for load_state_dict."""
    with open(path, "rb") as f:
        raw = f.read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    body = raw[8 + n:]
    out = {}
    for name, e in header.items():
        if name == "__metadata__":
            continue
        dtypes = {"F32": torch.float32, "I64": torch.int64}
        if e["dtype"] not in dtypes:
            raise ValueError(f"{path}: {name} is {e['dtype']}, not F32 or I64")
        b, end = e["data_offsets"]
        t = torch.frombuffer(bytearray(body[b:end]), dtype=dtypes[e["dtype"]])
        out[name] = t.reshape(e["shape"])
    return out


def latent_shape(text):
    """[model] latent: "Z" is (Z,), "Z:1:1" is (Z, 1, 1), as DCGAN feeds its generator."""
    dims = tuple(int(d) for d in text.split(":"))
    if len(dims) == 1 or (len(dims) == 3 and dims[1:] == (1, 1)):
        return dims
    raise ValueError(f"latent '{text}': write Z or Z:1:1")


def build_gan(generator, discriminator, latent, image):
    """G from the latent shape to one image (it must give exactly `image`) and D from an image
    to one logit (no final sigmoid: the loss is BCE with logits), as nn.Sequential each."""
    g, out = layer_list(generator, tuple(latent))
    if out != tuple(image):
        raise ValueError(f"the generator gives {out} per sample, not images {tuple(image)}")
    d, out = layer_list(discriminator, tuple(image))
    if out != (1,):
        raise ValueError(f"the discriminator gives {out} per sample, not one logit")
    return g, d


def dcgan_weights_init(model, generator):
    """[model] init = dcgan: DCGAN's weights_init (conv and deconv weights from N(0, 0.02), bn's
    weights from N(1, 0.02) and biases 0), drawn from `generator` (a torch.Generator)."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
                m.weight.normal_(0.0, 0.02, generator=generator)
            elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
                m.weight.normal_(1.0, 0.02, generator=generator)
                m.bias.zero_()


# engine/kernels.h's purposes of a GAN's noise
NOISE_TRAIN = 0x67616e0000000001  # a training step's fakes
NOISE_FIXED = 0x67616e0000000002  # the samples shown and written at evaluations
NOISE_EVAL = 0x67616e0000000003   # the samples an evaluation measures
NOISE_GENERATE = 0x67616e0000000004

_M64 = (1 << 64) - 1


def _mix64(z):
    """splitmix64's finaliser on uint64 numpy values (products wrap modulo 2^64, as C's)."""
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xbf58476d1ce4e5b9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94d049bb133111eb)
    return z ^ (z >> np.uint64(31))


def gan_noise_bits(seed, purpose, step, sample0, rows, draws):
    """dp_noise_bits for rows 0..rows-1 and draws 0..draws-1: uint64 [rows, draws]."""
    with np.errstate(over="ignore"):
        key = np.array([(step * 0x9e3779b97f4a7c15 + purpose) & _M64], dtype=np.uint64)
        h = _mix64(np.array([seed & _M64], dtype=np.uint64) ^ _mix64(key))
        place = (np.arange(rows, dtype=np.uint64) + np.uint64(sample0 & _M64)) * \
            np.uint64(0xc2b2ae3d27d4eb4f)
        j = np.arange(draws, dtype=np.uint64)
        return _mix64(h ^ _mix64(place[:, None] + j[None, :]))


def gan_noise(seed, purpose, step, sample0, rows, z):
    """dp_noise_value for rows 0..rows-1 (places sample0 + r) and values k < z: float32
    [rows, z], a standard normal by Box-Muller in double from draws 2k and 2k + 1, rounded to
    float. log and cos are the C library's (Python's math module calls them), not numpy's own
    vector versions, which may differ from them in the last bit."""
    bits = gan_noise_bits(seed, purpose, step, sample0, rows, 2 * z) >> np.uint64(11)
    u1 = ((bits[:, 0::2].astype(np.float64) + 1.0) * 2.0 ** -53).ravel().tolist()
    u2 = (bits[:, 1::2].astype(np.float64) * 2.0 ** -53).ravel().tolist()
    two_pi = 6.283185307179586
    vals = [math.sqrt(-2.0 * math.log(a)) * math.cos(two_pi * b) for a, b in zip(u1, u2)]
    return np.array(vals, dtype=np.float64).astype(np.float32).reshape(rows, z)


# engine/kernels.h's masked language model (BERT's masks)
MLM_MASK_TOKEN = 256              # a masked byte's input id: the vocabulary is 257
NOISE_MLM = 0x6d6c6d0000000001       # a training step's masks
NOISE_MLM_TEST = 0x6d6c6d0000000002  # the test split's fixed masks (seed 0, step 0)
MLM_CHOSEN = 2516582                 # floor(0.15 * 2^24)
MLM_MASKED = 13421772                # floor(0.8 * 2^24)
MLM_MASKED_OR_RANDOM = 15099494      # floor(0.9 * 2^24)


def mlm_mask(seed, purpose, step, sample0, x):
    """dp_mlm_input over a batch: x holds rows of T byte ids (row r at place sample0 + r);
    returns (inputs, labels) as int64 numpy arrays [rows, T]: a chosen position's input is the
    mask token, a random byte or kept, as dpmptop draws them bit for bit, and its label the
    byte; a position not chosen keeps its input and has label -1 (ignore_index=-1).
    Training: mlm_mask(run.seed, NOISE_MLM, step from 1, 0, batch); the test split:
    mlm_mask(0, NOISE_MLM_TEST, 0, index of the first sample in the split, samples)."""
    x = np.asarray(x, dtype=np.int64)
    rows, t = x.shape
    h = gan_noise_bits(seed, purpose, step, sample0, rows, t)
    chosen = (h >> np.uint64(40)) < np.uint64(MLM_CHOSEN)
    action = (h >> np.uint64(16)) & np.uint64(0xffffff)
    random_byte = (h & np.uint64(0xff)).astype(np.int64)
    picked = np.where(action < np.uint64(MLM_MASKED), MLM_MASK_TOKEN,
                      np.where(action < np.uint64(MLM_MASKED_OR_RANDOM), random_byte, x))
    return np.where(chosen, picked, x), np.where(chosen, x, -1)
