-- 0001: the first schema of docket's PostgreSQL store.
--
-- Every table is created in the first schema of the connection's
-- search_path. Times are timestamptz (microseconds, UTC); the zero
-- time.Time is stored as 0001-01-01 00:00:00+00, so comparisons in SQL agree
-- with time.Time's. Encoded values (inputs, results, outputs) are kept as the
-- engine's codec made them.

-- Executions. ord is the creation order: List pages by it (newest first)
-- and its cursor is an ord.
CREATE TABLE executions (
	id               text        PRIMARY KEY,
	ord              bigint      GENERATED ALWAYS AS IDENTITY UNIQUE,
	run              integer     NOT NULL,
	graph            text        NOT NULL,
	target           text        NOT NULL,
	codec            text        NOT NULL,
	inputs           jsonb       NOT NULL, -- array of {"type","data"} (data in base64), or null
	status           text        NOT NULL,
	result_type      text,                 -- NULL: no result
	result_data      bytea,
	error            text        NOT NULL,
	cancel_requested boolean     NOT NULL,
	deadline         timestamptz NOT NULL,
	created_at       timestamptz NOT NULL,
	updated_at       timestamptz NOT NULL,
	finished_at      timestamptz NOT NULL,
	seq              bigint      NOT NULL,
	parent           text        NOT NULL,
	parent_step      text        NOT NULL
);

CREATE INDEX executions_graph ON executions (graph, ord);
CREATE INDEX executions_status ON executions (status, ord);

CREATE TABLE steps (
	exec         text        NOT NULL REFERENCES executions (id) ON DELETE CASCADE,
	name         text        NOT NULL,
	status       text        NOT NULL,
	attempt      integer     NOT NULL,
	output_type  text,                 -- NULL: no output
	output_data  bytea,
	error        text        NOT NULL,
	wait         text        NOT NULL,
	wake_at      timestamptz NOT NULL,
	signal       text        NOT NULL,
	heartbeat    bytea,
	seq          bigint      NOT NULL,
	ready_at     timestamptz NOT NULL,
	started_at   timestamptz NOT NULL,
	finished_at  timestamptz NOT NULL,
	comp         text        NOT NULL,
	comp_attempt integer     NOT NULL,
	comp_error   text        NOT NULL,
	PRIMARY KEY (exec, name)
);

CREATE TABLE journal (
	exec    text        NOT NULL REFERENCES executions (id) ON DELETE CASCADE,
	step    text        NOT NULL,
	seq     integer     NOT NULL,
	kind    text        NOT NULL,
	name    text        NOT NULL,
	data    bytea,
	error   text        NOT NULL,
	done    boolean     NOT NULL,
	wake_at timestamptz NOT NULL,
	PRIMARY KEY (exec, step, seq)
);

-- Signals: each execution's inbox, in arrival order.
CREATE TABLE signals (
	exec         text        NOT NULL REFERENCES executions (id) ON DELETE CASCADE,
	seq          bigint      NOT NULL, -- arrival order within the execution, from 1
	name         text        NOT NULL,
	payload_type text        NOT NULL,
	payload_data bytea       NOT NULL,
	sent_at      timestamptz NOT NULL,
	consumed_by  text        NOT NULL, -- the step that received it, or ''
	PRIMARY KEY (exec, seq)
);

-- Tasks. The identity column never hands out an ID twice, so a stale lease
-- can never name a newer task. wake_at is when the task is next claimable:
-- the end of a live lease, else ReadyAt; a task is claimable at now exactly
-- when wake_at <= now.
CREATE TABLE tasks (
	id          bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	exec        text        NOT NULL REFERENCES executions (id) ON DELETE CASCADE,
	step        text        NOT NULL,
	kind        text        NOT NULL,
	ready_at    timestamptz NOT NULL,
	owner       text        NOT NULL, -- '' when not leased
	lease_until timestamptz NOT NULL,
	attempt     integer     NOT NULL,
	claims      integer     NOT NULL, -- Claim calls since the task was added or put
	wake_at     timestamptz NOT NULL GENERATED ALWAYS AS (
		CASE WHEN owner <> '' AND lease_until > ready_at THEN lease_until ELSE ready_at END
	) STORED
);

CREATE INDEX tasks_ready ON tasks (ready_at, id);
CREATE INDEX tasks_exec ON tasks (exec, id);
CREATE INDEX tasks_wake ON tasks (wake_at);

CREATE TABLE cache (
	key     text        PRIMARY KEY,
	value   bytea,
	expires timestamptz NOT NULL
);
