#!/usr/bin/python3
"""torch_bert.py -- tests/torch-bert.sh's PyTorch side: dpmptop's BERT-style encoders and its
masked language model against PyTorch's modules (bench/torch_models.py builds them).

    torch_bert.py load TEXT CONTEXT LAYERS SAVED METRICS
        SAVED (dpmptop --save after a few steps of [model] objective = mlm on the text file TEXT
        in windows of CONTEXT bytes) loads with load_state_dict(strict=True) into LAYERS built
        by torch_models.build; each enc layer, an nn.TransformerEncoderLayer, also loads
        strictly from its own part of the state dict (the names after "N."); and the twin's
        masked test loss in eval mode (the test split, the last tenth of TEXT, masked with
        the fixed test masks: torch_models.mlm_mask) is the loss of METRICS's last eval
        record (dpmptop --metrics) within 1e-5, over the same number of masked bytes, with
        the same accuracy (within one byte: a tie between two logits may break either way).
    torch_bert.py weights A B TOL
        two safetensors files hold the same tensors, equal within TOL.
    torch_bert.py twin DPMPTOP_JSONL TORCH_JSONL STEP_TOL EVAL_TOL
        the same training in both (dpmptop's --metrics, bench/torch_train.py's --metrics):
        the same evaluation steps over the same masked bytes, each evaluation's loss within
        EVAL_TOL, and the training loss of each of the first 10 steps within STEP_TOL
        relative (the masks of those steps and the model's first updates).
Exits 1 with a line per difference.
"""
import json
import math
import os
import sys

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "bench"))
import torch  # noqa: E402
import torch_models  # noqa: E402
import torch_train  # noqa: E402 (read_text, windows: the data as dpmptop cuts it)

failures = []


def check(ok, what):
    if not ok:
        failures.append(what)
        print(f"torch_bert.py: {what}", file=sys.stderr)


def records(path, kind):
    with open(path) as f:
        return [r for r in map(json.loads, f) if r.get("type") == kind]


def test_split(text, context):
    """The test split's windows, masked with the fixed test masks: (inputs, labels)."""
    b = torch_train.read_text(text)
    held_out = len(b) // 10
    xt, _ = torch_train.windows(b[len(b) - held_out:], context, torch)
    xm, y = torch_models.mlm_mask(0, torch_models.NOISE_MLM_TEST, 0, 0, xt.numpy())
    return torch.from_numpy(xm), torch.from_numpy(y)


def cmd_load(text, context, layers, saved, metrics):
    context = int(context)
    state = torch_models.load_safetensors(saved)
    model = torch_models.build(layers, (context,), 256)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        check(False, f"{saved} does not load strictly into {layers}: {e}")
        return
    encoders = 0
    for i, m in enumerate(model):
        if not isinstance(m, torch.nn.TransformerEncoderLayer):
            continue
        encoders += 1
        prefix = f"{i}."
        sub = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
        alone = torch_models.encoder_layer(m.linear1.in_features, m.self_attn.num_heads,
                                           m.norm_first)
        try:
            alone.load_state_dict(sub, strict=True)
        except RuntimeError as e:
            check(False, f"layer {i}'s tensors do not load into nn.TransformerEncoderLayer: {e}")
    check(encoders == layers.count("enc:"), f"{encoders} encoder layers built from {layers}")

    x, y = test_split(text, context)
    model.eval()
    with torch.no_grad():
        out = model(x).reshape(-1, 256)
    y = y.reshape(-1)
    positions = int((y >= 0).sum())
    loss = torch.nn.functional.cross_entropy(out, y, ignore_index=-1, reduction="sum").item()
    loss /= positions
    correct = int((out.argmax(dim=1) == y).sum())
    last = records(metrics, "eval")[-1]
    print(f"{layers}: masked test loss dpmptop {last['loss']:.8f}, PyTorch {loss:.8f} "
          f"(|diff| {abs(last['loss'] - loss):.2e}); accuracy {last['accuracy']:.6f}, "
          f"{correct / positions:.6f}; {positions} masked bytes")
    check(last.get("masked") is True, "dpmptop's eval record is not masked")
    check(last["masked_bytes"] == positions,
          f"dpmptop masked {last['masked_bytes']} test bytes, the twin's masks {positions}")
    check(abs(last["loss"] - loss) < 1e-5,
          f"masked test loss: dpmptop {last['loss']:.8f}, PyTorch {loss:.8f}")
    check(abs(last["accuracy"] * positions - correct) <= 1.0 + 1e-6,
          f"masked accuracy: dpmptop {last['accuracy']:.6f}, PyTorch {correct / positions:.6f}")


def cmd_weights(a, b, tol):
    tol = float(tol)
    sa, sb = torch_models.load_safetensors(a), torch_models.load_safetensors(b)
    check(sorted(sa) == sorted(sb), f"{a} and {b} hold different tensors")
    worst = 0.0
    for name in sa:
        if name not in sb or sa[name].shape != sb[name].shape:
            check(False, f"{name}: not in both, or of different shapes")
            continue
        diff = (sa[name] - sb[name]).abs().max().item()
        worst = max(worst, diff)
        check(diff <= tol, f"{name}: differs by {diff:.3e} (> {tol})")
    print(f"weights: {len(sa)} tensors, largest difference {worst:.3e}")


def cmd_twin(dp_path, torch_path, step_tol, eval_tol):
    step_tol, eval_tol = float(step_tol), float(eval_tol)
    dp_steps = {r["step"]: r["loss"] for r in records(dp_path, "step")}
    tw_steps = {r["step"]: r["loss"] for r in records(torch_path, "step")}
    for s in range(1, 11):
        a, b = dp_steps.get(s), tw_steps.get(s)
        check(a is not None and b is not None, f"step {s}: no loss in both")
        if a is not None and b is not None:
            check(abs(a - b) <= step_tol * abs(b),
                  f"step {s}: training loss dpmptop {a:.8f}, PyTorch {b:.8f}")
    dp_ev, tw_ev = records(dp_path, "eval"), records(torch_path, "eval")
    check([r["step"] for r in dp_ev] == [r["step"] for r in tw_ev],
          f"evaluations at steps {[r['step'] for r in dp_ev]} and {[r['step'] for r in tw_ev]}")
    worst = 0.0
    for a, b in zip(dp_ev, tw_ev):
        diff = abs(a["loss"] - b["loss"])
        worst = max(worst, diff)
        print(f"step {a['step']}: masked test loss dpmptop {a['loss']:.6f}, PyTorch "
              f"{b['loss']:.6f} (|diff| {diff:.1e}); accuracy {a['accuracy']:.4f}, "
              f"{b['accuracy']:.4f}")
        check(a["masked_bytes"] == b["positions"],
              f"step {a['step']}: {a['masked_bytes']} and {b['positions']} masked test bytes")
        check(math.isfinite(a["loss"]) and diff < eval_tol,
              f"step {a['step']}: masked test loss dpmptop {a['loss']:.6f}, "
              f"PyTorch {b['loss']:.6f}")
    print(f"twin: {len(dp_ev)} evaluations, largest loss difference {worst:.1e}")


def main():
    cmds = {"load": (cmd_load, 5), "weights": (cmd_weights, 3), "twin": (cmd_twin, 4)}
    if len(sys.argv) < 2 or sys.argv[1] not in cmds or len(sys.argv) - 2 != cmds[sys.argv[1]][1]:
        sys.exit(__doc__)
    fn, _ = cmds[sys.argv[1]]
    fn(*sys.argv[2:])
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
