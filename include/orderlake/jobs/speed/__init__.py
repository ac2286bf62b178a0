"""The speed layer: tmall.user_profiles + tmall.user_actions -> speed.* Delta tables, always on.

One Structured Streaming query reads both topics (a Kafka source each) and parses them against
the contract (source.parsed_stream). Before it starts, the profiles Kafka holds beyond what it
processed are stored (source.preload_profiles: a backlog's purchases then find their
users' profiles). Each micro-batch reads Kafka and parses once: an Observation counts every
row on the way (progress statistics) while only the rows that need more than counting reach
the driver, through Arrow: valid purchases (about one record in 16), malformed records and
profiles not stored yet. Nothing is cached: one pass catches up on a backlog faster than
caching the batch for a statistics job and collecting from the cache
(bench/results/speed-ab-one-pass-400k/).
Then, in this order (step.SpeedLayer):
  1. malformed records       -> speed.quarantine (raw value, Kafka coordinates, reason)
  2. profiles                -> speed.user_profiles: a user's first profile and each newer one
                                that changes it, appended (the view speed.users is the latest
                                per user by updated_at); the latest stay in memory too
                                (state.StoredUsers), so no micro-batch reads the table
  3. late profiles           -> purchases counted earlier under unknown (no profile yet) move to
                                the profile's bucket in speed.purchases (only while such
                                purchases exist: none in the steady state)
  4. purchases               -> de-duplicated by (event_id, event_time) against the purchases
                                counted in the batch's event-time range and given their user's
                                bucket in plain Python -> speed.purchases (one row per counted
                                purchase, with its bucket); the keys of recently counted
                                purchases stay in memory (state.CountedKeys), so a micro-batch
                                reads speed.purchases for this only when it holds purchases
                                older than what memory covers
The per-minute counts are the view speed.orders_by_age_gender_1m over speed.purchases: counting
and de-duplication are one append, so they can never disagree, and a micro-batch needs no MERGE
for its counts (a MERGE rewrites files; an append only adds one).

Exactly once: Kafka offsets are checkpointed; the write to speed.quarantine carries a Delta
transaction id (checkpoint's app id, batch id), so a micro-batch re-run after a crash commits it
at most once. speed.purchases and speed.user_profiles need none: a re-run finds its own
purchases among the counted ones and its own profiles among the stored ones, and writes nothing.
(A transaction id would make Delta reconstruct the table's state before every write to look it
up: bench/results/speed-ab-counted-keys-no-txn-10k.md.) Late
events count in their window whatever its age: nothing is dropped by a watermark.

The modules, by responsibility:
  source    the Kafka reads (one set of reader options) and the contract parse; profile preload
  state     what the driver keeps in memory between micro-batches (counted keys, stored users)
  step      one micro-batch into the speed tables (SpeedLayer), and the app id of its writes
  progress  the progress file `orderlake status` and the dashboard read, and the start-up heartbeat
  app       start-up: session settings, the single-instance lock, start(); the source is an argument
streaming/speed_layer.py is the process entry point; it only wires settings, session and query.
"""

from datetime import UTC, datetime

QUERY_NAME = "speed"  # the streaming query: its name, its checkpoint directory under the lake


def iso(epoch: float) -> str:
    """UTC ISO 8601 with milliseconds, as every time the speed layer records."""
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds")
