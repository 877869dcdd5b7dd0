"""A trial starter that must copy what it never saw (issue: a starter that handles what people type). Not the default.

    PYTHONPATH=. HF_HUB_OFFLINE=1 .venv/bin/python bench/copy_trial.py --arch gpt2 --vocab 300 --steps 1500

Its corpus puts random real words (the noun, verb and adjective lists of the `wonderwords` package, less a tenth
held out by hash and every content word of bench/copying.py's messages) into 24 message shapes. Its polite, terse
and rude rewrites copy the message's core verbatim, so copying is the only way to predict them; off-topic and
repetitive rewrites keep the default starter's spread of quality. It trains like worker/starter.py (byte-level BPE,
a model of the default size, one-cycle AdamW, batch 32), then reports bench/copying.py's measure.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import re
import time
from pathlib import Path

from bench.common import OUT
from bench.copying import MESSAGES, measure


def _inflections(word: str) -> set[str]:
    stems = {word, word.removesuffix("s"), word.removesuffix("ed"), word.removesuffix("ing"), word.removesuffix("d")}
    return stems | {s + end for s in stems for end in ("s", "ed", "ing", "d")}


HELD = set().union(*(_inflections(w) for _, words in MESSAGES for w in words))


def _words(name: str) -> list[str]:
    """A wonderwords list, less the held-out words (a tenth by hash, and the test messages' content)."""
    import wonderwords

    text = (Path(wonderwords.__file__).parent / "assets" / name).read_text()
    return [w for w in (line.strip() for line in text.splitlines()) if re.fullmatch(r"[a-z]{3,12}", w)
            and w not in HELD and int(hashlib.sha1(w.encode()).hexdigest(), 16) % 10]


NAMES = ["Anna", "Ben", "Carlos", "Dana", "Eli", "Fatima", "George", "Hana", "Ivan", "Julia", "Kofi", "Lena", "Marco",
         "Nina", "Omar", "Priya", "Quinn", "Rosa", "Sam", "Tom", "Uma", "Victor", "Wei", "Yara", "Zoe", "mom", "dad",
         "the boss", "the landlord", "your brother", "the neighbours", "the team"]
WHEN = ["now", "today", "right now", "by noon", "asap", "tonight", "by friday", "this morning", "before lunch",
        "at five", "tomorrow", "this week"]
INSULTS = ["idiot", "genius", "for once", "seriously", "come on", "you clown", "dummy", "honestly"]
OFF_TOPIC = ["The weather is nice today.", "I had pasta for lunch.", "My cat likes the sofa.",
             "Trains are often late in winter.", "The garden needs more sun.", "Blue is my favourite colour.",
             "I think it might rain later.", "Coffee tastes better at home."]
CORES = [
    "{v} the {n}", "{v} my {n}", "{v} the {n} and the {n2}", "{v} the {n}, the {n2} is {a} again",
    "{v} the {n}, it is {a}", "your {n} was {a} and way too {a2}", "where is my {n}? {v} it back",
    "you never {v} the {n}", "don't {v} my {n}", "tell {name} the {n} is {a}", "{v} {name} about the {n}",
    "the {n} is {a}, {v} it", "why is the {n} still {a}", "{v} the {n} before {when}", "I need the {n} {when}",
    "{v} the {n} for {name}", "the {n} is {a} and the {n2} is {a2}", "{v} your {n}, the {n2} is full",
    "stop it with the {n}", "{name} wants the {n} {when}", "get the {n} from the {n2}", "{v} it, the {n} is {a}",
    "{n} and {n2}, {v} them", "where did you put the {n}",
]
POLITE = ["Could you please {c}? Thank you!", "{c}, please. Thank you!", "Would you kindly {c}? Thanks a lot.",
          "Sorry to bother you, but please {c}. Thank you.", "When you have a moment, please {c}. Many thanks.",
          "{c}, if you don't mind. Thanks!", "I would appreciate it if you could {c}. Thank you."]
TERSE = ["{c}.", "{c}, please.", "Please {c}."]
RUDE = ["{c}, {insult}.", "{c}. Now.", "Just {c}, {insult}."]
MIX = "polite=.30,terse=.20,rude=.20,off_topic=.15,repetitive=.15"  # the default starter's spread of quality


def make_message(rng: random.Random, lists: dict) -> tuple[str, str, dict]:
    """(message, its core, the words filled in): a core, maybe capitalised, maybe a time or an insult after it."""
    slots = {"v": rng.choice(lists["verbs"]), "n": rng.choice(lists["nouns"]), "n2": rng.choice(lists["nouns"]),
             "a": rng.choice(lists["adjs"]), "a2": rng.choice(lists["adjs"]), "name": rng.choice(NAMES),
             "when": rng.choice(WHEN)}
    core = rng.choice(CORES).format(**slots)
    if rng.random() < 0.5:
        core = core[0].upper() + core[1:]
    r = rng.random()
    tail = f" {rng.choice(WHEN)}" if r < 0.25 else f", {rng.choice(INSULTS)}" if r < 0.45 else ""
    question = core.endswith("?") or core.split()[0].lower() in ("where", "why")
    end = ("?" if not core.endswith("?") else "") if question else rng.choice([".", "!", "", "?", "."])
    return core + tail + end, core, slots


def make_rewrite(kind: str, core: str, slots: dict, rng: random.Random) -> str:
    """One rewrite of the given quality; every kind but off-topic and repetitive copies the core verbatim."""
    c = core.rstrip("?")
    if kind == "polite":
        return rng.choice(POLITE).format(c=c)
    if kind == "terse":
        return rng.choice(TERSE).format(c=c)
    if kind == "rude":
        return rng.choice(RUDE).format(c=c, insult=rng.choice(INSULTS))
    if kind == "off_topic":
        return rng.choice(OFF_TOPIC)
    if kind == "echo":  # the message unchanged: the plainest copy, and a bad rewrite (it is no more polite)
        return core + "."
    text = " ".join([rng.choice(["please", slots["n"], slots["v"]])] * rng.randint(3, 6)) + "."
    return text[0].upper() + text[1:]


def make_corpus(n: int, seed: int, mix: str = MIX) -> list[tuple[str, str, str]]:
    """n (message, rewrite, kind) rows, deterministic for a seed; mix is "kind=share,..."."""
    rng = random.Random(seed)
    lists = {"verbs": _words("verblist.txt"), "nouns": _words("nounlist.txt"), "adjs": _words("adjectivelist.txt")}
    shares = dict(item.split("=") for item in mix.split(","))
    kinds, weights = list(shares), [float(w) for w in shares.values()]
    rows = []
    for _ in range(n):
        message, core, slots = make_message(rng, lists)
        kind = rng.choices(kinds, weights)[0]
        rows.append((message, make_rewrite(kind, core, slots, rng), kind))
    return rows


def train(args, out: Path) -> dict:
    """Train the trial starter into out with worker/starter.py's own training, on the trial corpus."""
    from worker.starter import StarterConfig, prompt_template, train_starter

    corpus = make_corpus(args.rows, 0, args.mix)
    seen = {w for row in corpus for text in row[:2] for w in re.findall(r"[a-z]+", text.lower())}
    assert not seen & HELD, f"held-out words in the corpus: {sorted(seen & HELD)[:10]}"
    cfg = StarterConfig(arch=args.arch, vocab=args.vocab, steps=args.steps, lr=args.lr)
    summary = train_starter(cfg, out, corpus=corpus, log=lambda line: print(line, flush=True))
    (out / "manifest.json").write_text(json.dumps({"prompt_template": prompt_template(args.arch)}))
    return {"params": summary["params"]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--arch", choices=["gpt2", "t5"], default="gpt2")
    p.add_argument("--vocab", type=int, default=300)
    p.add_argument("--steps", type=int, default=1500)
    p.add_argument("--rows", type=int, default=30000)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--mix", default=MIX, help="kinds of rewrite and their shares (echo: the message unchanged)")
    p.add_argument("--tag", default="", help="added to the output folder's name")
    p.add_argument("--max-new-tokens", type=int, default=40)
    args = p.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    out = OUT / "copy-trial" / f"{args.arch}-v{args.vocab}-s{args.steps}-lr{args.lr:g}{args.tag}"
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    built = train(args, out)
    seconds = time.perf_counter() - started
    result = measure(out, 30, {"temperature": 1.0, "top_p": 0.95, "max_new_tokens": args.max_new_tokens})
    summary = {"args": vars(args), "build_s": round(seconds), **built, "kept": result["kept"],
               "all_kept": result["all_kept"], "examples": result["examples"]}
    (out / "result.json").write_text(json.dumps(summary, indent=2))
    print(f"{args.arch} vocab {args.vocab} steps {args.steps}: built in {seconds:.0f}s, content words kept "
          f"{result['kept']:.1%}, samples keeping all {result['all_kept']:.1%}")


if __name__ == "__main__":
    main()
