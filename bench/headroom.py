"""How many acceptable answers the starter offers each measured message, and the distinct they allow at 90% good.

    PYTHONPATH=. HF_HUB_OFFLINE=1 .venv/bin/python bench/headroom.py [--samples 50] [--arch gpt2] [--checkpoint DIR]

Samples `--samples` completions (served settings, no duplicate resampling) for each message of the loop's measured
realistic set and counts, per judge, the distinct strings it accepts (K). DPO anchored to the starter moves
probability between the strings the starter samples. If it spreads a message's probability evenly over its K
accepted strings, the expected distinct of 3 is 3 - 3/K + 1/K^2 (3 - 3 sum p^2 + sum p^3). With 90% on them and 10%
on strings that never repeat, it is 3 - 3(0.81/K) + 0.729/K^2. Where the mean of that over the messages is below
2.5, "90% good and 2.5 distinct" needs strings the starter does not offer, whatever the training. K is a lower
estimate: a string rarer than about 1/samples is seldom seen. Writes bench/out/headroom.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections import Counter
from pathlib import Path

from bench.common import OUT, cached_starter, markdown_table
from bench.judges import JUDGES
from bench.loop import generation_settings, prompt_sets

GOOD_SHARE = 0.9  # the good-rate target


def expected_distinct(probabilities: list[float]) -> float:
    """The expected number of distinct strings among 3 independent samples: 3 - 3 sum p^2 + sum p^3."""
    return 3 - 3 * sum(p * p for p in probabilities) + sum(p ** 3 for p in probabilities)


def ceiling(accepted: int, *, good_share: float) -> float:
    """The expected distinct of 3 with `good_share` spread evenly over `accepted` strings and the rest on strings that
    never repeat; with none accepted, every sample is a string of its own (3)."""
    if accepted == 0:
        return 3.0
    return expected_distinct([good_share / accepted] * accepted)


def headroom(samples_by_message: dict[str, list[str]], judge_name: str) -> dict:
    """Per judge: the starter's good rate and expected distinct, the accepted strings per message (K), and the
    ceilings on expected distinct with all, or 90%, of each message's probability on its accepted strings."""
    judge = JUDGES[judge_name]
    ks, good, own = [], 0, []
    for message, texts in samples_by_message.items():
        counts = Counter(texts)
        accepted = [t for t in counts if judge.good(message, t)]
        ks.append(len(accepted))
        good += sum(counts[t] for t in accepted)
        own.append(expected_distinct([c / len(texts) for c in counts.values()]))
    n = sum(len(texts) for texts in samples_by_message.values())
    return {
        "good_rate": good / n,
        "starter_distinct": statistics.fmean(own),
        "accepted_strings": ks,
        "median_accepted": statistics.median(ks),
        "share_none": sum(k == 0 for k in ks) / len(ks),
        "share_five_or_more": sum(k >= 5 for k in ks) / len(ks),
        # Messages with no accepted string cannot be good: the all-good ceiling is over the rest.
        "ceiling_all_good": statistics.fmean(ceiling(k, good_share=1.0) for k in ks if k) if any(ks) else 0.0,
        "ceiling_at_90": statistics.fmean(ceiling(k, good_share=GOOD_SHARE) for k in ks),
    }


def sample_messages(path: Path, messages: list[str], gen: dict, *, samples: int, chunk: int = 10) -> dict:
    """`samples` raw completions per message, `chunk` messages to a batch."""
    from app.lm.checkpoint import load_checkpoint
    from app.lm.sampling import sample_batch

    loaded = load_checkpoint(str(path), device="cpu")
    out = {}
    for start in range(0, len(messages), chunk):
        part = messages[start:start + chunk]
        got = sample_batch(loaded, model_prompts=[loaded.format_prompt(m) for m in part], n=samples, seed=start,
                           dedup_tries=0, **gen)
        out.update({m: raw for m, (_, raw) in zip(part, got, strict=True)})
    return out


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--samples", type=int, default=50)
    p.add_argument("--arch", default="gpt2", choices=["gpt2", "t5"])
    p.add_argument("--checkpoint", type=Path, help="a checkpoint folder instead of the default starter")
    p.add_argument("--judges", default=",".join(JUDGES))
    p.add_argument("--heldout", type=int, default=100, help="measured messages (the loop's --heldout)")
    p.add_argument("--out", type=Path, default=OUT / "headroom.json")
    args = p.parse_args(argv)
    path = args.checkpoint or cached_starter(args.arch, "default")
    _, measured = prompt_sets("realistic", pool=0, heldout=args.heldout, seed=0)
    gen = generation_settings({})
    by_message = sample_messages(path, measured, gen, samples=args.samples)
    results = {name: headroom(by_message, name) for name in args.judges.split(",")}
    rows = [[name, f"{100 * r['good_rate']:.1f}%", f"{r['starter_distinct']:.2f}", r["median_accepted"],
             f"{100 * r['share_none']:.0f}%", f"{100 * r['share_five_or_more']:.0f}%", f"{r['ceiling_all_good']:.2f}",
             f"{r['ceiling_at_90']:.2f}"] for name, r in results.items()]
    print(f"{path}: {len(measured)} messages, {args.samples} samples each, {gen}")
    print(markdown_table(["judge", "starter good", "starter distinct", "median K", "K = 0", "K >= 5",
                          "ceiling, all on K", "ceiling at 90% good"], rows))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"checkpoint": str(path), "samples": args.samples, "generation": gen,
                                    "messages": measured, "results": results}, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
