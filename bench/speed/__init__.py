"""Speed-layer benchmark: offered event rates -> freshness, micro-batch costs, lag, max rate, peer.

Input: offered rates (``--rates 5000,20000``, lines/s), the measured length of each step
(``--seconds``), an unmeasured warm-up (``--warmup``), optionally ``--find-max`` and
``--skip-peer``. Output: ``bench/results/speed.json`` (machine, settings, per-rate results,
find-max, peer comparison) and ``bench/results/speed.md`` (Markdown tables, also printed).

It runs on an isolated platform (own temp ORDERLAKE_HOME, free ports) started with
`orderlake up --only kafka,flume,streaming` and stopped with `orderlake down` at the end, also on
failure or Ctrl-C:

    orderlake generate --live --rate R  ->  2 Flume edge agents  ->  collector  ->  Kafka
    ->  streaming/speed_layer.py (supervised, always on)  ->  speed.purchases (Delta)

1. Freshness. Each line's live ``event_time`` is its append time. A purchase is visible when the
   micro-batch that counted it (speed.purchases.batch_id) committed: ``committed_at`` of that
   batch in the job's progress file, which keeps only the last 120 batches, so a monitor thread
   copies it every second (merged by batch_id) and samples Kafka lag (end offsets minus the
   offsets the job processed, both topics: `kafka_lag_total` of `orderlake status`) every 2 s.
   After each step the benchmark waits until every line reached Kafka and the lag is 0, then
   reads the step's purchases (event ids from the generator manifest) from speed.purchases with
   one local Spark session (1g driver) started after the platform.
2. ``--find-max``: +5,000/s from the highest rate the job kept up with until it does not. It
   kept up when its lag did not grow over the second half of the measured window (slope of the
   lag right after each commit > 5% of the offered rate = growing) and it caught up after the
   step; sustained = kept up, and the generator and Kafka received >= 95% of the offered rate.
3. Peer. The supervised job is stopped; then over the same backlog (both topics from offset 0 to
   their end offsets, profiles included on both sides) a plain Python consumer (bench.speed.plain:
   confluent-kafka, json.loads, dicts) counts purchases per (minute, age bracket, gender), and
   streaming/speed_layer.py --once processes it from scratch into a fresh ORDERLAKE_HOME. Each
   runs as a process of its own and is timed the same way, from its process start to its exit,
   with the CPU seconds of its process tree: records/s of both and their ratio, next to each
   side's CPU seconds per million records; the two sets of counts compared bucket by bucket.

The machine is shared (CI, other engineers' platforms): core count, load averages and the CPU
used by processes that are not ours are recorded with the results.

The modules: runner (the live steps and find-max), monitor (what is sampled while they run, and
its statistics), peer (the plain consumer and the --once run over the same backlog), report (the
Markdown), __main__ (the command line: `python -m bench.speed`, `make bench-speed`).
"""

from orderlake import contracts

TOPICS = (contracts.TOPIC_ACTIONS, contracts.TOPIC_PROFILES)
PURCHASES = "speed.purchases"
