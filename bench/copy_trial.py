"""A trial starter: the default recipe with another mix of rewrites, arch, vocabulary, steps or learning rate.

    PYTHONPATH=. HF_HUB_OFFLINE=1 .venv/bin/python bench/copy_trial.py --arch t5 --vocab 300 --steps 1500 --lr 5e-4 \
        [--mix "polite=.30,terse=.20,rude=.15,echo=.20,off_topic=.08,repetitive=.07"] [--tag=-NAME]

It trains with worker/starter.train_starter on worker/corpus.make_corpus (the mix given, else the default), into
bench/out/copy-trial/, then reports bench/copying.py's measure: the share of unseen content words kept. (The trials
of docs/BENCHMARKS.md ran on an earlier trial corpus, 24 shapes and its own word filter: this file at a2f81f6.)
"""

from __future__ import annotations

import argparse
import json
import time

from bench.common import OUT
from bench.copying import measure


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--arch", choices=["gpt2", "t5"], default="gpt2")
    p.add_argument("--vocab", type=int, default=300)
    p.add_argument("--steps", type=int, default=1500)
    p.add_argument("--rows", type=int, default=30000)
    p.add_argument("--lr", type=float, default=None, help="default: the starter's own for the arch")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--mix", default="", help="kinds of rewrite and their shares, e.g. polite=.3,echo=.2,...")
    p.add_argument("--tag", default="", help="added to the output folder's name")
    p.add_argument("--max-new-tokens", type=int, default=80)
    args = p.parse_args()
    import torch

    from worker.corpus import MIX, make_corpus
    from worker.starter import StarterConfig, prompt_template, train_starter

    torch.set_num_threads(args.threads)
    mix = [(k, float(v)) for k, v in (item.split("=") for item in args.mix.split(","))] if args.mix else MIX
    cfg = StarterConfig(arch=args.arch, vocab=args.vocab, steps=args.steps, lr=args.lr, corpus_size=args.rows)
    out = OUT / "copy-trial" / f"{args.arch}-v{args.vocab}-s{args.steps}-lr{cfg.lr:g}{args.tag}"
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    corpus = make_corpus(n=cfg.corpus_size, seed=cfg.seed, mix=mix)
    summary = train_starter(cfg, out, corpus=corpus, log=lambda line: print(line, flush=True))
    (out / "manifest.json").write_text(json.dumps({"prompt_template": prompt_template(args.arch)}))
    seconds = time.perf_counter() - started
    result = measure(out, 30, {"temperature": 1.0, "top_p": 0.95, "max_new_tokens": args.max_new_tokens})
    report = {"args": vars(args), "build_s": round(seconds), "params": summary["params"],
              "final_loss": summary["final_loss"], **result}
    (out / "result.json").write_text(json.dumps(report, indent=2))
    print(f"{args.arch} vocab {args.vocab} steps {args.steps}: built in {seconds:.0f}s, content words kept "
          f"{result['kept']:.1%}, samples keeping all {result['all_kept']:.1%}")


if __name__ == "__main__":
    main()
