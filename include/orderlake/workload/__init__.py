"""Workload producers: synthetic or replayed Tianchi lines -> <spool>/<host>/{actions,profiles}.log.

- ``spool``: ``SpoolWriter``, the only code that appends to spool files (rate limit, rotation by
  rename, per-file sequence numbers that survive restarts).
- ``generator``: synthetic Tianchi-shaped actions and profiles reproducing the published marginals.
- ``tianchi``: streaming replay of the real data_format1 CSVs, with rejects kept and counted.

The Flume edge agents tail the spool; nothing here talks to Kafka.
"""
