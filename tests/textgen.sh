#!/bin/sh
# textgen.sh -- trained language models used without training, as a user meets them:
# --generate N --prompt TEXT on a small GPT (the prompt and N bytes, the same bytes for the same
# seed and others for another, --top-k 1 the same whatever the seed, every draw among the top k,
# the same text from a checkpoint or under another plan) and --fill TEXT on a small encoder
# (each _ replaced, 5 candidates sorted, an encoder of "abab..." filling "ab_b" with 'a'); with
# PyTorch, the choices and probabilities checked against the same weights in torch; and the
# refusals of both (exit 2, one line saying why).
. "${srcdir:-.}/tests/lib.sh"

write_text "$work/words.txt" 3000
python3 -c "import sys; open(sys.argv[1], 'w').write('ab' * 5000)" "$work/abab.txt" ||
    fail "could not write $work/abab.txt"
context=32
# write_ini FILE TEXT OBJECTIVE LAYERS: 60 steps on TEXT with a context of 32 bytes
write_ini() {
    cat >"$1" <<INI
[run]
steps = 60
seed = 1
[data]
kind = text
path = $2
context = $context
batch = 16
[model]
objective = $3
layers = $4
[optim]
kind = adamw
lr = 0.01
INI
}
gpt_layers='embed:256:32, pos, block:2, ln, linear:256'
bert_layers='embed:257:32, pos, enc:2, linear:256'
write_ini "$work/gpt.ini" "$work/words.txt" classify "$gpt_layers"
write_ini "$work/bert.ini" "$work/words.txt" mlm "$bert_layers"
write_ini "$work/abab.ini" "$work/abab.txt" mlm "$bert_layers"
for model in gpt bert abab; do
    "$DPMPTOP" -c "$work/$model.ini" --save "$work/$model.safetensors" \
        --checkpoint-dir "$work/$model-ckpt" --set checkpoint.every=60 >"$work/train.out" 2>&1 ||
        fail "training $model: exit $?: $(tail -n 3 "$work/train.out")"
done

# ---- --generate on the GPT ----
# gen NAME OPTIONS...: the bytes of --generate with the GPT's weights into $work/NAME
gen() {
    name=$1
    shift
    "$DPMPTOP" -c "$work/gpt.ini" --init "$work/gpt.safetensors" "$@" >"$work/$name" \
        2>"$work/$name.err" || fail "--generate $*: exit $?: $(cat "$work/$name.err")"
}
gen a --generate 50 --prompt abc
gen b --generate 50 --prompt abc
gen c --generate 50 --prompt abc --set run.seed=2
[ "$(wc -c <"$work/a")" -eq 53 ] || fail "--generate 50 --prompt abc: $(wc -c <"$work/a") bytes"
[ "$(head -c 3 "$work/a")" = abc ] || fail "--generate: the output does not start with the prompt"
cmp -s "$work/a" "$work/b" || fail "--generate: two runs with one seed differ"
cmp -s "$work/a" "$work/c" && fail "--generate: another seed gave the same bytes"
# the model learnt the words: most of what it writes are letters and spaces
letters=$(tail -c 50 "$work/a" | tr -cd 'a-z ' | wc -c)
[ "$letters" -ge 40 ] || fail "--generate: $letters of 50 bytes are letters or spaces"
# greedy: the likeliest byte each time, whatever the seed
gen greedy1 --generate 40 --prompt "the " --top-k 1
gen greedy2 --generate 40 --prompt "the " --top-k 1 --set run.seed=7
cmp -s "$work/greedy1" "$work/greedy2" || fail "--top-k 1 depends on the seed"
gen top3 --generate 40 --prompt "the " --top-k 3 --temperature 0.7
gen hot --generate 40 --prompt "the " --temperature 5
cmp -s "$work/top3" "$work/hot" && fail "--temperature 5 wrote what --top-k 3 did"
# without a prompt: N bytes (the newline it starts from is not printed)
gen bare --generate 30
[ "$(wc -c <"$work/bare")" -eq 30 ] || fail "--generate 30: $(wc -c <"$work/bare") bytes"
# a prompt longer than the context: all of it printed, the last 32 bytes seen
long_prompt="the gradient of the pipeline stage of the device"
gen long --generate 20 --prompt "$long_prompt"
[ "$(wc -c <"$work/long")" -eq $((${#long_prompt} + 20)) ] ||
    fail "--generate 20 after ${#long_prompt} bytes: $(wc -c <"$work/long") bytes"
# one device whatever [parallel] says; the checkpoint's weights (its notes on stderr)
gen pp --generate 50 --prompt abc --devices cpu:2 --strategy pp --microbatches 4
cmp -s "$work/a" "$work/pp" || fail "--generate under --strategy pp differs"
"$DPMPTOP" -c "$work/gpt.ini" --resume "$work/gpt-ckpt" --generate 50 --prompt abc \
    >"$work/resumed" 2>"$work/resumed.err" || fail "--resume --generate: exit $?"
cmp -s "$work/a" "$work/resumed" ||
    fail "--generate from the checkpoint differs from --init: $(head -c 80 "$work/resumed")"
grep -q 'resuming from' "$work/resumed.err" || fail "--resume's note is not on stderr"

# ---- --fill on the encoders ----
# fill NAME MODEL TEXT: --fill TEXT with MODEL's weights into $work/NAME
fill() {
    "$DPMPTOP" -c "$work/$2.ini" --init "$work/$2.safetensors" --fill "$3" >"$work/$1" \
        2>"$work/$1.err" || fail "--fill $3: exit $?: $(cat "$work/$1.err")"
}
fill ab abab "ab_b"
[ "$(head -n 1 "$work/ab")" = abab ] || fail "--fill ab_b on abab...: $(head -n 1 "$work/ab")"
grep -Eq "^mask 1 at byte 3: 'a' 0\.9" "$work/ab" || fail "--fill ab_b: $(sed -n 2p "$work/ab")"
fill ab2 abab "ab_b"
cmp -s "$work/ab" "$work/ab2" || fail "--fill: two runs differ"
words_text="the gradi_nt of the s_mple st_p"
fill words bert "$words_text"
# check_fill FILE TEXT: the first line is TEXT with each _ replaced by a byte, then a line per
# _ with 5 candidates, the first of them the byte that replaced it, probabilities sorted, summing
# to at most 1 (each rounded to 4 decimals)
check_fill() {
    python3 - "$@" <<'PY' || fail "--fill $2: $(cat "$1")"
import re, sys
out = open(sys.argv[1], "rb").read().split(b"\n")
text = sys.argv[2].encode()
first, lines = out[0], [l for l in out[1:] if l]
masks = [i for i, b in enumerate(text) if b == ord("_")]
assert len(first) == len(text), first
assert all(first[i] == text[i] for i in range(len(text)) if i not in masks), first
assert len(lines) == len(masks), lines
cand = re.compile(rb"(?:'(.)'|\\x([0-9a-f]{2})) (\d\.\d{4})")
for n, (line, at) in enumerate(zip(lines, masks)):
    head = b"mask %d at byte %d:" % (n + 1, at + 1)
    assert line.startswith(head), line
    found = cand.findall(line[len(head):])
    assert len(found) == 5, line
    ids = [ord(c) if c else int(h, 16) for c, h, _ in found]
    probs = [float(p) for _, _, p in found]
    assert ids[0] == first[at], (ids, first)
    assert len(set(ids)) == 5 and probs == sorted(probs, reverse=True), line
    assert sum(probs) <= 1.0003, line
PY
}
check_fill "$work/words" "$words_text"
check_fill "$work/ab" "ab_b"
fill edge bert "__________ of the pipeline stage"
check_fill "$work/edge" "__________ of the pipeline stage"
"$DPMPTOP" -c "$work/bert.ini" --resume "$work/bert-ckpt" --fill "$words_text" \
    >"$work/words-resumed" 2>/dev/null || fail "--resume --fill: exit $?"
cmp -s "$work/words" "$work/words-resumed" || fail "--fill from the checkpoint differs"

# ---- the same choices as PyTorch's on the same weights ----
if /usr/bin/python3 -c "import torch" 2>/dev/null; then
    /usr/bin/python3 - "${srcdir:-.}" "$work" "$context" "$gpt_layers" "$words_text" <<'PY' ||
import re, sys
import torch
import torch.nn as nn
src, work, T, gpt_layers, words_text = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5]
sys.path.insert(0, src + "/bench")
import torch_models as tm

torch.set_grad_enabled(False)
gpt = tm.build(gpt_layers, (T,), 256)
gpt.load_state_dict(tm.load_safetensors(f"{work}/gpt.safetensors"), strict=True)
gpt.eval()

def check_draws(name, prompt, k):
    """Each byte drawn is among torch's k likeliest at its place (within float rounding)."""
    out = open(f"{work}/{name}", "rb").read()
    seq = list(prompt)
    for i in range(len(prompt), len(out)):
        window = seq[-T:]  # at positions 0.., zeros after it, as dpmptop places them
        logits = gpt(torch.tensor([window + [0] * (T - len(window))]))[0, len(window) - 1]
        kth = logits.topk(k).values[-1].item()
        assert logits[out[i]].item() >= kth - 1e-3, (name, i, out[i], logits[out[i]].item(), kth)
        seq.append(out[i])

check_draws("greedy1", b"the ", 1)
check_draws("top3", b"the ", 3)
check_draws("long", b"the gradient of the pipeline stage of the device", 256)

# the encoder: nn.TransformerEncoderLayer(32, 2, 128, dropout=0, gelu, batch_first)
bert = nn.Sequential(nn.Embedding(257, 32), tm.Pos(T, 32),
                     nn.TransformerEncoderLayer(32, 2, 128, dropout=0.0, activation="gelu",
                                                batch_first=True),
                     nn.Linear(32, 256))
bert.load_state_dict(tm.load_safetensors(f"{work}/bert.safetensors"), strict=True)
bert.eval()
text = words_text.encode()
ids = [256 if b == ord("_") else b for b in text] + [ord(" ")] * (T - len(text))
probs = bert(torch.tensor([ids]))[0].softmax(-1)
lines = open(f"{work}/words", "rb").read().split(b"\n")[1:]
masks = [i for i, b in enumerate(text) if b == ord("_")]
cand = re.compile(rb"(?:'(.)'|\\x([0-9a-f]{2})) (\d\.\d{4})")
for line, at in zip(lines, masks):
    found = cand.findall(line)
    want = probs[at].topk(5)
    for (c, h, p), tp in zip(found, want.values.tolist()):
        b = ord(c) if c else int(h, 16)
        assert abs(float(p) - probs[at, b].item()) < 2e-4, (line, b, probs[at, b].item())
        assert abs(float(p) - tp) < 2e-4, (line, want)
PY
        fail "the draws or the fill differ from PyTorch's on the same weights"
else
    echo "note: /usr/bin/python3 cannot import torch: the comparison with PyTorch is skipped"
fi

# ---- refusals ----
gpt="-c $work/gpt.ini --init $work/gpt.safetensors"
bert="-c $work/bert.ini --init $work/bert.safetensors"
gan="-c ${srcdir:-.}/examples/fashion-gan.ini"
# shellcheck disable=SC2086 # the options above are words
{
expect_exit 2 'use --fill TEXT' -- "$DPMPTOP" $bert --generate 10 --prompt abc
expect_exit 2 'needs a masked language model.*use --generate N --prompt' -- \
    "$DPMPTOP" $gpt --fill "ab_"
expect_exit 2 'needs a masked language model.*a GAN' -- "$DPMPTOP" $gan --fill "ab_"
expect_exit 2 'needs a masked language model.*a classifier' -- "$DPMPTOP" --fill "ab_"
expect_exit 2 'this configuration trains a classifier' -- \
    "$DPMPTOP" --generate 5 --prompt abc --init "$work/gpt.safetensors"
expect_exit 2 "are a language model's; this configuration is a GAN" -- \
    "$DPMPTOP" $gan --generate 5 --prompt abc --output "$work/x.idx"
expect_exit 2 'needs --output FILE' -- "$DPMPTOP" $gan --generate 5
expect_exit 2 '--output is where a GAN' -- "$DPMPTOP" $gpt --generate 5 --output "$work/x.txt"
expect_exit 2 '--generate needs trained weights: --init FILE' -- \
    "$DPMPTOP" -c "$work/gpt.ini" --generate 5 --prompt abc
expect_exit 2 '--fill needs trained weights' -- "$DPMPTOP" -c "$work/bert.ini" --fill "ab_"
expect_exit 2 "the text has 33 bytes, more than the model's context \(\[data\] context = 32\)" -- \
    "$DPMPTOP" $bert --fill "_12345678901234567890123456789012"
expect_exit 2 'no _ in the text' -- "$DPMPTOP" $bert --fill "abc"
expect_exit 2 'no _ in the text' -- "$DPMPTOP" $bert --fill ""
expect_exit 2 'go with --generate N' -- "$DPMPTOP" $gpt --prompt abc
expect_exit 2 'go with --generate N' -- "$DPMPTOP" $gpt --top-k 3
expect_exit 2 'go with --generate N' -- "$DPMPTOP" $gpt --fill "a_" --temperature 2
expect_exit 2 'give one' -- "$DPMPTOP" $gpt --generate 5 --fill "a_"
expect_exit 2 '--fill trains nothing' -- "$DPMPTOP" $bert --fill "a_" --save "$work/no.st"
expect_exit 2 '--generate trains nothing' -- \
    "$DPMPTOP" $gpt --generate 5 --metrics "$work/no.jsonl"
expect_exit 2 '--fill given twice' -- "$DPMPTOP" $bert --fill "a_" --fill "b_"
expect_exit 2 '--prompt given twice' -- "$DPMPTOP" $gpt --generate 5 --prompt a --prompt b
expect_exit 2 'names where --generate writes' -- "$DPMPTOP" $bert --fill "a_" --output x
for t in 0 -1 nan inf 1e999 abc ""; do
    expect_exit 2 "--temperature $t: expected a number above 0" -- \
        "$DPMPTOP" $gpt --generate 5 --temperature "$t"
done
for k in -1 257 3x ""; do
    expect_exit 2 "--top-k $k: expected a count of bytes from 0" -- \
        "$DPMPTOP" $gpt --generate 5 --top-k "$k"
done
expect_exit 2 '--generate 0: expected a count of samples \(or bytes\) from 1 to 65536' -- \
    "$DPMPTOP" $gpt --generate 0
expect_exit 2 '--generate 65537: expected a count' -- "$DPMPTOP" $gpt --generate 65537
# weights of the other kind of model: --init names the tensors that do not match
expect_exit 2 '^dpmptop: --init ' -- \
    "$DPMPTOP" -c "$work/gpt.ini" --init "$work/bert.safetensors" --generate 5
expect_exit 2 '^dpmptop: --init ' -- \
    "$DPMPTOP" -c "$work/bert.ini" --init "$work/gpt.safetensors" --fill "a_"
}
[ ! -e "$work/no.st" ] && [ ! -e "$work/no.jsonl" ] || fail "a refused run wrote an output"
finish
