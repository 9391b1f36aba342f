"""Peer systems of the quality benchmark (bench/quality.ts runs this with its own virtualenv).

    python bench/peers.py --input STREAM.tsv --jobs JOBS.json --out DIR

STREAM.tsv is the stream bench/quality.ts exported (bench/quality-core.ts, exportLine): one event
a line, in the order learned, `label<TAB>user<TAB>item<TAB>field tokens separated by spaces`.
JOBS.json is a list of {"id", "system", "lr", "seed", "events"}: each job replays the first
`events` events through a fresh model of `system` with learning rate `lr`, and for every event
writes the probability the model gave it BEFORE learning from it (progressive validation) to
DIR/<id>.txt, one a line. Scores (AUC, logloss) are not computed here: the benchmark computes
them in TypeScript with one function for every system. DIR/manifest.json lists, per job, the
seconds spent predicting and learning, and the model's bytes where known; and the systems that
could not run (package missing), with the reason.

Systems:
  vw-linear  Vowpal Wabbit, --loss_function logistic (one pass, default adaptive normalized SGD), -b 18
  vw-quad    the same with -q ui (user x item pairs)
  vw-lrq     the same with --lrq ui8 (rank-8 low-rank user x item quadratic; VW draws its init from
             the weight index, not --random_seed: one run)
  river-lr   river linear_model.LogisticRegression, optimizer AdaGrad(lr)
  river-fm   river facto.FMClassifier, 8 factors, SGD(lr) for weights and latents (random init: seed)
Namespaces: u the user token, i the item token, f the other fields.
"""

import argparse
import json
import math
import os
import sys
import time

VW_BITS = 18
VW_ARGS = {
    "vw-linear": "",
    "vw-quad": "-q ui",
    "vw-lrq": "--lrq ui8",
}


def read_stream(path, limit):
    rows = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            if limit is not None and len(rows) >= limit:
                break
            parts = line.rstrip("\n").split("\t")
            label = float(parts[0])
            fields = parts[3].split(" ") if len(parts) > 3 and parts[3] != "" else []
            rows.append((label, parts[1], parts[2], fields))
    return rows


def vw_lines(rows):
    out = []
    for label, user, item, fields in rows:
        lab = "1" if label >= 0.5 else "-1"
        f = f" |f {' '.join(fields)}" if fields else ""
        out.append(f"{lab} |u {user} |i {item}{f}")
    return out


def river_dicts(rows):
    out = []
    for _label, user, item, fields in rows:
        x = {user: 1.0, item: 1.0}
        for t in fields:
            x[t] = 1.0
        out.append(x)
    return out


def run_vw(system, lr, seed, lines):
    from vowpalwabbit import pyvw

    args = f"--loss_function logistic --link logistic --quiet -b {VW_BITS} -l {lr} --random_seed {seed} {VW_ARGS[system]}"
    vw = pyvw.Workspace(args)
    probs = []
    t0 = time.perf_counter()
    for line in lines:
        probs.append(vw.predict(line))
        vw.learn(line)
    seconds = time.perf_counter() - t0
    # Every weight slot of the table: 2^b weights x stride floats (adaptive, normalized, ...) x 4 bytes.
    nbytes = vw.num_weights() * vw.get_stride() * 4
    vw.finish()
    return probs, seconds, nbytes, f"vw {args}"


def run_river(system, lr, seed, xs, labels):
    from river import facto, linear_model, optim

    if system == "river-lr":
        model = linear_model.LogisticRegression(optimizer=optim.AdaGrad(lr))
        desc = f"linear_model.LogisticRegression(optimizer=optim.AdaGrad({lr}))"
    else:
        model = facto.FMClassifier(
            n_factors=8,
            weight_optimizer=optim.SGD(lr),
            latent_optimizer=optim.SGD(lr),
            seed=seed,
        )
        desc = f"facto.FMClassifier(n_factors=8, weight_optimizer=optim.SGD({lr}), latent_optimizer=optim.SGD({lr}), seed={seed})"
    probs = []
    t0 = time.perf_counter()
    for x, y in zip(xs, labels):
        probs.append(model.predict_proba_one(x).get(True, 0.5))
        model.learn_one(x, y >= 0.5)
    seconds = time.perf_counter() - t0
    # Estimate: the parameters as float64, Python's dict and object overhead not counted.
    if system == "river-lr":
        params = len(model._weights) + 1
    else:
        params = len(model.weights) + 1 + 8 * len(model.latents)
    return probs, seconds, params * 8, desc


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--input", required=True)
    ap.add_argument("--jobs", required=True)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    with open(a.jobs, encoding="utf-8") as f:
        jobs = json.load(f)
    os.makedirs(a.out, exist_ok=True)

    unavailable = {}
    try:
        import vowpalwabbit  # noqa: F401
    except Exception as e:  # noqa: BLE001
        for s in VW_ARGS:
            unavailable[s] = f"vowpalwabbit not importable: {e}"
    try:
        import river  # noqa: F401
    except Exception as e:  # noqa: BLE001
        for s in ("river-lr", "river-fm"):
            unavailable[s] = f"river not importable: {e}"

    limit = max((j["events"] for j in jobs), default=0)
    rows = read_stream(a.input, limit)
    labels = [r[0] for r in rows]
    cache = {}
    runs = []
    for job in jobs:
        system = job["system"]
        rec = {k: job[k] for k in ("id", "system", "lr", "seed", "events")}
        if system in unavailable:
            rec["error"] = unavailable[system]
            runs.append(rec)
            continue
        n = job["events"]
        try:
            if system.startswith("vw-"):
                if "vw" not in cache:
                    cache["vw"] = vw_lines(rows)
                probs, seconds, nbytes, desc = run_vw(system, job["lr"], job["seed"], cache["vw"][:n])
            elif system.startswith("river-"):
                if "river" not in cache:
                    cache["river"] = river_dicts(rows)
                probs, seconds, nbytes, desc = run_river(
                    system, job["lr"], job["seed"], cache["river"][:n], labels[:n]
                )
            else:
                raise ValueError(f"unknown system {system}")
        except Exception as e:  # noqa: BLE001
            rec["error"] = f"{type(e).__name__}: {e}"
            runs.append(rec)
            print(f"peers: {job['id']}: {rec['error']}", file=sys.stderr)
            continue
        with open(os.path.join(a.out, f"{job['id']}.txt"), "w", encoding="utf-8") as f:
            f.write("\n".join("nan" if (p != p or math.isinf(p)) else f"{p:.9g}" for p in probs))
            f.write("\n")
        rec.update(seconds=seconds, bytes=nbytes, config=desc, file=f"{job['id']}.txt")
        runs.append(rec)
        print(f"peers: {job['id']}: {len(probs)} events in {seconds:.1f} s", file=sys.stderr)
    with open(os.path.join(a.out, "manifest.json"), "w", encoding="utf-8") as f:
        json.dump({"unavailable": unavailable, "runs": runs}, f, indent=1)


if __name__ == "__main__":
    main()
