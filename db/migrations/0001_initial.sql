-- Schema version 1 (docs/store.md "Schema"). Applied in one transaction at open.
-- Integers: proto 0 icmp, 1 stamp, 2 ttl; direction 0 forward, 1 reverse. Unsigned 64-bit values
-- (seq, counts) are stored as their two's-complement int64.

CREATE TABLE agents (
  id INTEGER PRIMARY KEY,
  name TEXT NOT NULL UNIQUE,
  version TEXT NOT NULL,          -- of its last batch
  last_run TEXT NOT NULL,         -- run id of its last batch
  first_seen_ns INTEGER NOT NULL, -- collector's CLOCK_REALTIME at its first ingest
  last_seen_ns INTEGER NOT NULL,  -- ... at its last ingest
  batches INTEGER NOT NULL        -- batches ingested (a resent batch counts again)
);

-- Path labels, interned: probes and rollups hold the id.
CREATE TABLE paths (
  id INTEGER PRIMARY KEY,
  name TEXT NOT NULL UNIQUE
);

-- One probe stream: (agent, target, proto), over all runs.
CREATE TABLE targets (
  id INTEGER PRIMARY KEY,
  agent_id INTEGER NOT NULL REFERENCES agents(id),
  target TEXT NOT NULL,
  proto INTEGER NOT NULL,
  first_ns INTEGER NOT NULL,      -- first second with a rollup or probe
  last_ns INTEGER NOT NULL,       -- last second with a rollup or probe
  last_session INTEGER,           -- sessions.id that last_ns came from
  UNIQUE (agent_id, target, proto)
);

-- One session of one run of an agent: (agent, run, session_id) of a target and protocol.
CREATE TABLE sessions (
  id INTEGER PRIMARY KEY,
  target_id INTEGER NOT NULL REFERENCES targets(id),
  run TEXT NOT NULL,
  session_id INTEGER NOT NULL,
  UNIQUE (target_id, run, session_id)
);

-- Raw probe records, compact: times as offsets from tx_ns, paths interned, booleans and the loss
-- direction in one flags integer (docs/store.md "Probes").
CREATE TABLE probes (
  session INTEGER NOT NULL,       -- sessions.id
  seq INTEGER NOT NULL,
  tx_ns INTEGER NOT NULL,
  rx_off INTEGER,                 -- rx_ns - tx_ns; NULL: lost
  rtt_x INTEGER,                  -- rtt_ns when not rx_off (not 0 when lost); NULL otherwise
  flags INTEGER NOT NULL,         -- 1 tx_kernel_ts, 2 reflector clock_synced, 4 late, loss << 3
  fwd_path INTEGER NOT NULL,      -- paths.id
  rev_path INTEGER NOT NULL,      -- paths.id
  refl_seq INTEGER,               -- STAMP reflector's sequence
  refl_rx_off INTEGER,            -- reflector rx_ns - tx_ns
  refl_tx_off INTEGER,            -- reflector tx_ns - reflector rx_ns (- tx_ns without rx)
  taps_down BLOB,                 -- NULL: none; else "<len>:<name>" repeated
  PRIMARY KEY (session, seq)
) WITHOUT ROWID;
CREATE INDEX probes_time ON probes (session, tx_ns);

-- Per-second rollups: one second x session x direction x path.
CREATE TABLE rollup_1s (
  session INTEGER NOT NULL,
  second_ns INTEGER NOT NULL,
  direction INTEGER NOT NULL,
  path INTEGER NOT NULL,          -- paths.id
  sent INTEGER NOT NULL,
  received INTEGER NOT NULL,
  lost_forward INTEGER NOT NULL,
  lost_reverse INTEGER NOT NULL,
  lost_undetermined INTEGER NOT NULL,
  rtt_min_ns INTEGER NOT NULL,
  rtt_mean_ns INTEGER NOT NULL,
  rtt_p50_ns INTEGER NOT NULL,
  rtt_p99_ns INTEGER NOT NULL,
  rtt_max_ns INTEGER NOT NULL,
  jitter_ns INTEGER NOT NULL,
  PRIMARY KEY (session, second_ns, direction, path)
) WITHOUT ROWID;

-- Path events: a few indexed columns and the event as ingested (record_json, no "agent").
CREATE TABLE events (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  agent_id INTEGER NOT NULL REFERENCES agents(id),
  run TEXT NOT NULL,
  event_id INTEGER NOT NULL,
  kind TEXT NOT NULL,             -- "switchover", "tap_down", ...
  target TEXT NOT NULL,           -- "" for tap events
  ts_ns INTEGER NOT NULL,
  json TEXT NOT NULL,
  UNIQUE (agent_id, run, event_id)
);
CREATE INDEX events_time ON events (ts_ns);
CREATE INDEX events_pin ON events (agent_id, target, ts_ns);
