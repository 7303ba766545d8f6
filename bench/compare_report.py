#!/usr/bin/python3
"""compare_report: the table of bench/compare.sh from the JSON lines its three programs print.

Usage: compare_report.py LINES MD MACHINE DATE LOAD (MD "" for no markdown file)."""
import json
import sys

path, md, machine, date, load = sys.argv[1:6]
rows = [json.loads(line) for line in open(path)]
tg = {(r["workload"], r["threads"], r["checks"]): r for r in rows if r["bench"] == "tapegrad" and "checks" in r
      and "workload" in r}
tlin = next((r for r in rows if r.get("what") == "t_linearity"), None)
np_ = {(r["workload"], int(r["threads"])): r for r in rows if r["bench"] == "numpy_seed"}
# nn.LSTM's rows (the LSTM-* workloads) sit in nn.RNN's column
th = {("nn.RNN" if r["bench"] == "nn.LSTM" else r["bench"], r["workload"], r["threads"]): r for r in rows
      if r["bench"] in ("nn.RNN", "nn.LSTM", "torch_ops")}
ovh = {r["checks"]: r for r in rows if r.get("what") == "overhead"}
gc = next((r for r in rows if r.get("what") == "gradcheck"), None)
tgc = next((r for r in rows if r["bench"] == "torch_gradcheck"), None)


def f(x, d=2):
    return "-" if x is None else f"{x:.{d}f}"


out = [f"Machine: {machine}; {date}; load average at the end {load}. Threads as in the thr column (tapegrad: "
       "openblas_set_num_threads; NumPy: OPENBLAS_NUM_THREADS; PyTorch: torch.set_num_threads). Allocators: "
       "tapegrad's arena; glibc malloc for NumPy; PyTorch's CPU allocator; glibc tunables at their defaults. "
       "f32, D = H, xs needing a gradient; medians, ms per training step (forward + backward). tapegrad's "
       "ratios (to the bound, the checks' cost, and T 256 to T 64) are medians of each repetition's own ratio: a "
       "repetition runs what it compares back to back, so its ratio cancels the machine's drift. LSTM-* rows: "
       "a TimeLSTM at W1's and W2's sizes, its bound the layer's own GEMMs (3 T + 3), beside torch.nn.LSTM.", "",
       "| workload | thr | bound ms | tapegrad ms, checks / off | / bound, checks / off | checks cost | GFLOP/s "
       "| NumPy seed ms | nn.RNN (nn.LSTM) ms | torch ops ms | tapegrad / NumPy | peak MiB, tapegrad / NumPy "
       "| mallocs/step |",
       "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|"]
# W0..W2, then W2-T256, then the LSTM rows
order = lambda kv: (kv[0][0].replace("W2-T256", "W3").replace("LSTM-", "X"), kv[0][1])
for (w, t, c), on in sorted(tg.items(), key=order):
    if c != "saved":
        continue
    off, n = tg[(w, t, "off")], np_.get((w, t))
    nn, ops = th.get(("nn.RNN", w, t)), th.get(("torch_ops", w, t))
    out.append(f"| {w} (N {on['N']} T {on['T']} H {on['H']}) | {t} | {f(on['bound_ms'], 3)} "
               f"| {f(on['ms'], 3)} / {f(off['ms'], 3)} | {f(on['ratio'])} / {f(off['ratio'])} "
               f"| {f(100 * (on['checks_ratio'] - 1), 1)} % | {f(on['gflops'], 1)} | {f(n and n['ms'], 3)} "
               f"| {f(nn and nn['ms'], 3)} | {f(ops and ops['ms'], 3)} | {f(n and on['ms'] / n['ms'])} "
               f"| {f(on['peak_mib'], 1)} / {f(n and n['peak_mib'], 1)} | {on['mallocs_per_step']:.0f} |")
out.append("")
w2, w2l, n2 = tg.get(("W2", 2, "saved")), tg.get(("W2-T256", 2, "saved")), np_.get(("W2", 2))
if tlin:
    out.append(f"- Linear in T: W2 at T 256 takes {tlin['ratio']:.2f}x W2 at T 64 (2 threads, checks on; the median "
               "of each repetition's ratio, both steps run in it).")
elif w2 and w2l:
    out.append(f"- Linear in T: W2 at T 256 takes {w2l['ms'] / w2['ms']:.2f}x W2 at T 64 (2 threads, checks on).")
if w2 and n2:
    ratio = w2["peak_mib"] / n2["peak_mib"]
    out.append(f"- Step memory at W2: tapegrad's peak {w2['peak_mib']:.1f} MiB is {ratio:.2f}x the NumPy seed's "
               "(tracemalloc's peak over a step).")
if ovh:
    out.append(f"- Tape overhead per op (a 1-element tg_mul chain, forward + backward): "
               f"{f(ovh['saved']['ns_per_op'], 1)} ns with checks, {f(ovh['off']['ns_per_op'], 1)} ns without; "
               f"{ovh['saved']['mallocs_per_step']:.0f} mallocs per warm chain.")
if gc and tgc:
    out.append(f"- Full-mode gradient check of TimeRNN (N 2 T 5 D 3 H 4, f64, 1 thread): tg_gradcheck {gc['ms']:.2f} "
               f"ms, torch.autograd.gradcheck {tgc['ms']:.1f} ms: {tgc['ms'] / gc['ms']:.0f}x faster.")
text = "\n".join(out)
print("\n" + text)
if md:
    open(md, "w").write(text + "\n")
