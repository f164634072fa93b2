-- 0001: the first schema of docket's SQLite store.
--
-- Times are INTEGER microseconds since the Unix epoch, UTC; the zero
-- time.Time is stored as its own (very negative) value, so comparisons in
-- SQL agree with time.Time's. Encoded values (inputs, results, outputs) are
-- kept as the engine's codec made them.

-- Executions. ord is the creation order: List pages by it (newest first)
-- and its cursor is an ord.
CREATE TABLE executions (
	ord              INTEGER PRIMARY KEY AUTOINCREMENT,
	id               TEXT    NOT NULL UNIQUE,
	run              INTEGER NOT NULL,
	graph            TEXT    NOT NULL,
	target           TEXT    NOT NULL,
	codec            TEXT    NOT NULL,
	inputs           TEXT    NOT NULL, -- JSON array of {"type","data"}, or null
	status           TEXT    NOT NULL,
	result_type      TEXT,             -- NULL: no result
	result_data      BLOB,
	error            TEXT    NOT NULL,
	cancel_requested INTEGER NOT NULL,
	deadline         INTEGER NOT NULL,
	created_at       INTEGER NOT NULL,
	updated_at       INTEGER NOT NULL,
	finished_at      INTEGER NOT NULL,
	seq              INTEGER NOT NULL
) STRICT;

CREATE INDEX executions_graph ON executions (graph, ord);
CREATE INDEX executions_status ON executions (status, ord);
CREATE INDEX executions_created ON executions (created_at);

CREATE TABLE steps (
	exec         TEXT    NOT NULL REFERENCES executions (id) ON DELETE CASCADE,
	name         TEXT    NOT NULL,
	status       TEXT    NOT NULL,
	attempt      INTEGER NOT NULL,
	output_type  TEXT,             -- NULL: no output
	output_data  BLOB,
	error        TEXT    NOT NULL,
	wait         TEXT    NOT NULL,
	wake_at      INTEGER NOT NULL,
	heartbeat    BLOB,
	seq          INTEGER NOT NULL,
	ready_at     INTEGER NOT NULL,
	started_at   INTEGER NOT NULL,
	finished_at  INTEGER NOT NULL,
	comp         TEXT    NOT NULL,
	comp_attempt INTEGER NOT NULL,
	comp_error   TEXT    NOT NULL,
	PRIMARY KEY (exec, name)
) STRICT;

CREATE TABLE journal (
	exec    TEXT    NOT NULL REFERENCES executions (id) ON DELETE CASCADE,
	step    TEXT    NOT NULL,
	seq     INTEGER NOT NULL,
	kind    TEXT    NOT NULL,
	name    TEXT    NOT NULL,
	data    BLOB,
	error   TEXT    NOT NULL,
	done    INTEGER NOT NULL,
	wake_at INTEGER NOT NULL,
	PRIMARY KEY (exec, step, seq)
) STRICT;

-- Tasks. AUTOINCREMENT: IDs are never reused, so a stale lease can never
-- name a newer task. wake_at is when an idle worker should look again: the
-- end of a live lease, else ReadyAt.
CREATE TABLE tasks (
	id          INTEGER PRIMARY KEY AUTOINCREMENT,
	exec        TEXT    NOT NULL REFERENCES executions (id) ON DELETE CASCADE,
	step        TEXT    NOT NULL,
	kind        TEXT    NOT NULL,
	ready_at    INTEGER NOT NULL,
	owner       TEXT    NOT NULL, -- '' when not leased
	lease_until INTEGER NOT NULL,
	attempt     INTEGER NOT NULL DEFAULT 0,
	claims      INTEGER NOT NULL DEFAULT 0, -- Claim calls since the task was added or put
	wake_at     INTEGER NOT NULL GENERATED ALWAYS AS (
		CASE WHEN owner <> '' AND lease_until > ready_at THEN lease_until ELSE ready_at END
	) VIRTUAL
) STRICT;

CREATE INDEX tasks_ready ON tasks (ready_at, id);
CREATE INDEX tasks_exec ON tasks (exec, id);
CREATE INDEX tasks_wake ON tasks (wake_at);

CREATE TABLE cache (
	key     TEXT    PRIMARY KEY,
	value   BLOB,
	expires INTEGER NOT NULL
) STRICT;
