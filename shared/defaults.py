"""Every tunable default in one place, each with its unit in its name."""

from __future__ import annotations

import os
from dataclasses import dataclass

# Environment variables whose values could not be read, name -> (raw value, the least it may be):
# `shared.settings.resolve` refuses them in one line (exit 2) rather than let a typo silently run with the default.
BAD_ENV: dict[str, tuple[str, int]] = {}


def _env_int(name: str, default: int, least: int = 1) -> int:
    """A limit an operator may change for every process (set it alike on producers and workers); a value below
    `least` is refused."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < least:
        BAD_ENV[name] = (raw, least)
        return default
    return value


# Where things are found when nobody says otherwise.
DEFAULT_BROKER_URL = "redis://127.0.0.1:6379/0"
DEFAULT_HOME = "~/.tensorq"
DEFAULT_KEY_PREFIX = "tensorq:"
DEFAULT_REDIS_PORT = 6379
DEFAULT_FLOWER_PORT = 5555
DEFAULT_METRICS_PORT = 9808  # `tensorq metrics`, and the exporter `tensorq up` starts

# Celery's Redis transport re-delivers an unacknowledged message after this long. It must outlast the
# longest job, or a long job runs twice (celery/celery#5935); every process uses this one value.
VISIBILITY_TIMEOUT_S = 86_400

# How long a client waits for Redis before it says the broker is unreachable.
CONNECT_TIMEOUT_S = 3.0
# Socket timeout for ordinary commands; blocking reads use shorter blocks than this.
SOCKET_TIMEOUT_S = 15.0
# A worker waiting out a broker that is not serving (down, out of memory, loading, read-only) tries again
# after BROKER_RETRY_START_S, doubling up to BROKER_RETRY_MAX_S; it never gives up.
BROKER_RETRY_START_S = 0.5
BROKER_RETRY_MAX_S = 5.0
# A waiter or watcher (`tensorq wait`, `watch`, Job.wait) rides out a broker that is not serving for this long,
# a Sentinel failover's worth (seconds), before it says so and exits as any command does.
BROKER_RIDE_OUT_S = 30.0
# Redis replicates asynchronously: where the primary has replicas, a submit (records, then messages) and a leased
# job's ending wait this long at most (WAIT) until one of them holds those writes, so that a failover right
# after loses none of them. How many replicas there are is read again at most this often.
REPLICA_WAIT_MS = 1_000
REPLICAS_RECOUNT_S = 10.0

# Loss history: the training loop hands its losses over in batches, never one round trip per iteration.
LOSS_FLUSH_ITERATIONS = 1_000  # at most this many losses are held before a flush
LOSS_FLUSH_INTERVAL_S = 0.5  # ... and at most this long
HISTORY_READ_ENTRIES = 256  # stream entries fetched per XRANGE page when reading a history back

# Blobs (artifacts, checkpoints, datasets) at most this large are one Redis value; larger ones are kept in chunks
# (shared/chunked.py) of BLOB_CHUNK_BYTES: small enough that one chunk's SET or GET holds Redis (single-threaded)
# for a millisecond or so, and that redis-py's copies of a reply being read (about four of it) stay small; large
# enough that a round trip per chunk costs little (docs/BENCHMARKS.md, "Blobs of any size").
ARTIFACT_INLINE_MAX_BYTES = 32 * 1024 * 1024
BLOB_CHUNK_BYTES = 4 * 1024 * 1024
BLOB_WRITE_DEPTH = 4  # chunks per pipeline when writing: views of the tensors' own memory, nothing copied
BLOB_READ_DEPTH = 1  # ... when reading: each reply is copies held until it is in the buffer (2 read no faster)
# A chunk is written with this TTL and made permanent (or given its job's TTL) when its blob is complete: a writer
# that crashes or is fenced out midway leaves nothing behind for longer. A blob must be written within it.
BLOB_PENDING_TTL_S = 900
# With TENSORQ_ARTIFACTS (an object store or shared path, shared/objects.py), blobs of at least this many bytes
# (TENSORQ_ARTIFACTS_MIN_BYTES) go there instead of into Redis; smaller ones stay in Redis.
ARTIFACTS_MIN_BYTES = ARTIFACT_INLINE_MAX_BYTES

# Worker heartbeats: published every HEARTBEAT_INTERVAL_S, a node counts as gone after HEARTBEAT_TTL_S.
HEARTBEAT_INTERVAL_S = 2.0
HEARTBEAT_TTL_S = 15

# Limits on what a job may ask for, checked before enqueue and again on the worker. Each can be changed
# with the environment variable named beside it.
MAX_TENSOR_ELEMENTS = _env_int("TENSORQ_MAX_TENSOR_ELEMENTS", 4 * 1024 * 1024)  # per operand and result
MAX_TENSOR_DIMS = 8
MAX_LAYER_SIZE = _env_int("TENSORQ_MAX_LAYER_SIZE", 1 << 16)  # batch, input, hidden and output sizes each
MAX_TRAIN_ELEMENTS = _env_int("TENSORQ_MAX_TRAIN_ELEMENTS", 1 << 30)  # x + y + w1 + w2 elements together
MAX_ITERATIONS = _env_int("TENSORQ_MAX_ITERATIONS", 10_000_000)
# A dataset's x and y each (they were held to MAX_TENSOR_ELEMENTS while a blob had to be one Redis value): 1 GiB of
# float32 each by default.
MAX_DATASET_ELEMENTS = _env_int("TENSORQ_MAX_DATASET_ELEMENTS", 1 << 28)

# Leases: a running job's worker renews its lease every LEASE_RENEW_S; a lease unrenewed for LEASE_TTL_S
# has lapsed (the worker died, or is cut off) and any live worker, looking every REAP_INTERVAL_S, puts the job
# back. TENSORQ_LEASE_TTL_S trades how soon a dead worker's job runs elsewhere against how long a worker may go
# unheard (a stall, a network blip) before its job is taken: renewing and reaping keep their proportions to it.
# Set it alike on every worker (each lease is renewed and reaped by the TTL of the worker holding or reaping it).
LEASE_TTL_S = _env_int("TENSORQ_LEASE_TTL_S", 15, least=3)
LEASE_RENEW_S = LEASE_TTL_S / 7.5  # 2 s at 15: a lease outlives six lost renewals
REAP_INTERVAL_S = LEASE_TTL_S / 3  # 5 s at 15
# How often a worker looks for a cancel request for its running job (the loop stops at the next iteration).
CANCEL_CHECK_S = 0.25
# A training job checkpoints this often unless its spec says every N iterations.
CHECKPOINT_INTERVAL_S = 30.0

# The launcher gives up on a worker process that crashes on its own more than 5 times in this many seconds
# (never on one that exits while the broker is not serving). TENSORQ_RESTART_WINDOW_S changes it.
RESTART_WINDOW_S = _env_int("TENSORQ_RESTART_WINDOW_S", 60)

# A CPU job whose thread count nobody fixed re-reads how busy its box is this often and runs with the cores
# the rest leaves it (worker/cpu_share.py; docs/BENCHMARKS.md, "CPU workers that share a box").
CPU_SHARE_SAMPLE_S = 0.2
# torch sums a tensor of fewer elements than this on one thread (at::internal::GRAIN_SIZE), so its bits do not
# depend on the thread count; a training job summing more keeps one count.
TORCH_REDUCTION_GRAIN = 32_768

# Batched op jobs (map_op, `submit op --many`): at most this many ops ride in one message.
BATCH_MAX_OPS = 1_000

# Waiting blocks on the job's loss stream and the stream of ended jobs, this long per read.
WAIT_BLOCK_MS = 500
# The stream of ended jobs keeps about this many entries (waiters only need the newest).
FINISHED_STREAM_MAXLEN = 100_000

# Retention: a finished op job is kept this long unless TENSORQ_OP_TTL (or TENSORQ_HISTORY_TTL) says otherwise; ops
# are cheap to run again and pile up by the million. Other kinds are kept until TENSORQ_HISTORY_TTL says.
OP_TTL_S = 7 * 86_400
# Expiring jobs are listed in buckets of this many seconds of expiry time (a list of ids each, about 18 bytes an
# id, where a sorted set's member costs about 100): the index entries of an expired job go at most this late.
EXPIRY_BUCKET_S = 60
# `tensorq prune` deletes jobs this many at a time: each page is a few pipelines, never one huge command.
PRUNE_PAGE_JOBS = 500

# A record stays one compact listpack in Redis while every value is at most 64 bytes (hash-max-listpack-value's
# default); beyond that the whole hash turns into a hash table, about twice its size. So values up to
# RECORD_PIECES_MAX pieces long are stored in pieces of RECORD_PIECE_BYTES (`spec`, `spec#1`, ...); longer ones
# whole (the record is large anyway).
RECORD_PIECE_BYTES = 64
RECORD_PIECES_MAX = 8
# An op's result at most this large (in its compact form) lives in its job's record instead of a key of its own.
RESULT_INLINE_MAX_BYTES = RECORD_PIECE_BYTES * RECORD_PIECES_MAX


# A training job's defaults: TrainSpec's field defaults and the `--help` of `submit train` both read them here
# (the CLI sends only the flags given, so the spec decides every other field).
@dataclass(frozen=True)
class TrainDefaults:
    batch_size: int = 64
    input_size: int = 1000
    hidden_size: int = 100
    output_size: int = 10
    lr: float = 1e-6
    iterations: int = 500
    seed: int = 0
    activation: str = "relu"
    loss: str = "sse"
    grad: str = "autograd"  # `manual` when --fast or --cuda-graph is given without --grad
    dtype: str = "float32"


TRAIN = TrainDefaults()
