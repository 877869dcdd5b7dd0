"""Does the starter keep the content of messages it never saw? (issue: a starter that handles what people type)

    PYTHONPATH=. HF_HUB_OFFLINE=1 .venv/bin/python bench/copying.py [--samples 30] [--archs gpt2,t5]

Everyday messages whose content words (verbs, objects, names) are not in the starter's corpus: the held-out-words
test. Their shapes are not all new: 4 of the 20 fit a shape of the corpus generator exactly (bench/realistic.py's
`corpus_shape`: "where is my drill? give it back" is "where is my {n}? {v} it back"), and others follow its
patterns loosely. Messages as people write them, in shapes of their own, are bench/data/messages.txt. For
each, the served settings sample `--samples` completions; a content word is kept by a sample when it appears in
it (case-insensitive, as a whole word). Reports the share of (sample, content word) kept, the share of samples
that keep every content word, and a few samples. Writes bench/out/copying.json.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
from pathlib import Path

from bench.common import OUT, cached_starter, markdown_table
from bench.judges import content_words, words

# (message, its content words): everyday requests and complaints whose words the corpus's lists leave out
# (worker/corpus.py EVERYDAY).
MESSAGES = [
    ("call the plumber, the sink leaks again", ["plumber", "sink", "leaks"]),
    ("your presentation was boring and way too long", ["presentation", "boring"]),
    ("where is my drill? give it back", ["drill"]),
    ("feed the dog before you leave", ["feed", "dog"]),
    ("stop parking in my driveway", ["parking", "driveway"]),
    ("pick up the kids at five", ["pick", "kids"]),
    ("water the plants while I'm away", ["water", "plants"]),
    ("answer my email already", ["answer", "email"]),
    ("take out the trash, it stinks", ["trash", "stinks"]),
    ("move your car, it blocks the garage", ["move", "car", "garage"]),
    ("tell Maria the party is cancelled", ["maria", "party", "cancelled"]),
    ("buy milk and eggs on the way home", ["buy", "milk", "eggs"]),
    ("turn the music down, I'm trying to sleep", ["music", "sleep"]),
    ("you forgot to lock the door again", ["forgot", "lock", "door"]),
    ("bring back the ladder you borrowed", ["ladder", "borrowed"]),
    ("the printer is jammed, go fix it", ["printer", "jammed"]),
    ("walk the dog tonight", ["walk", "dog"]),
    ("pay the rent before monday", ["pay", "rent", "monday"]),
    ("wash your dishes, the sink is full", ["wash", "dishes", "sink"]),
    ("call grandma, she is waiting", ["grandma", "waiting"]),
]
_WORD = re.compile(r"[a-z0-9']+")


def corpus_words() -> set[str]:
    """Every word the starter's corpus uses, as the default starter builds it."""
    from worker.corpus import make_corpus
    from worker.starter import StarterConfig

    cfg = StarterConfig()
    return {w for row in make_corpus(n=cfg.corpus_size, seed=cfg.seed) for text in row[:2]
            for w in _WORD.findall(text.lower())}


def measure(path: Path, samples: int, gen: dict, messages: list[tuple[str, list[str]]] = MESSAGES) -> dict:
    """Sample each message `samples` times; the share of content words kept."""
    from app.lm.checkpoint import load_checkpoint
    from app.lm.sampling import sample_candidates

    loaded = load_checkpoint(str(path), device="cpu")
    kept, whole, examples = [], [], []
    # Where in the message a dropped word stood: a starter that learnt to drop a message's tail keeps its last
    # content word far less often than its first.
    by_position: dict[str, list[bool]] = {"first": [], "middle": [], "last": [], "only": []}
    for i, (message, content) in enumerate(messages):
        _, raw = sample_candidates(loaded, model_prompt=loaded.format_prompt(message), n=samples, seed=i,
                                   dedup_tries=0, **gen)
        for text in raw:
            found = set(words(text))
            hits = [w in found for w in content]
            kept.append(sum(hits) / len(hits))
            whole.append(all(hits))
            for k, hit in enumerate(hits):
                where = "only" if len(hits) == 1 else "first" if k == 0 else "last" if k == len(hits) - 1 \
                    else "middle"
                by_position[where].append(hit)
        examples.append({"input": message, "samples": raw[:4]})
    return {"kept": statistics.mean(kept), "all_kept": statistics.mean(whole),
            "kept_by_position": {k: round(statistics.mean(v), 4) for k, v in by_position.items() if v},
            "examples": examples}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--samples", type=int, default=30)
    p.add_argument("--archs", default="gpt2,t5")
    p.add_argument("--set", choices=["held-out-words", "realistic"], default="held-out-words",
                   help="realistic: bench/realistic.py's measured set, its content words as bench/judges.py reads them")
    p.add_argument("--out", type=Path, default=OUT / "copying.json")
    args = p.parse_args()
    import torch

    from app.platform.config import Config

    torch.set_num_threads(1)
    cfg = Config()
    gen = {"temperature": cfg.TEMPERATURE, "top_p": cfg.TOP_P, "min_p": cfg.MIN_P, "max_new_tokens": cfg.MAX_NEW_TOKENS}
    if args.set == "realistic":
        from bench.realistic import split

        messages = [(m, content_words(m)) for m in split()[1]]
    else:
        messages = MESSAGES
        seen = sorted({w for _, content in MESSAGES for w in content} & corpus_words())
        if seen:
            raise SystemExit(f"these content words are in the corpus, so they do not test copying: {seen}")
    results = {arch: measure(cached_starter(arch, "default"), args.samples, gen, messages)
               for arch in args.archs.split(",")}
    rows = [[arch, f"{r['kept']:.1%}", f"{r['all_kept']:.1%}",
             ", ".join(f"{k} {v:.1%}" for k, v in r["kept_by_position"].items())] for arch, r in results.items()]
    print(markdown_table(["starter", "content words kept", "samples keeping every content word",
                          "kept by the word's place in the message"], rows))
    for arch, r in results.items():
        for ex in r["examples"][:3]:
            print(f"{arch}: {ex['input']!r} -> {ex['samples']}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"samples": args.samples, "generation": gen, "results": results}, indent=2))


if __name__ == "__main__":
    main()
