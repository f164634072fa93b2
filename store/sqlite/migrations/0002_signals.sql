-- Signals: each execution's inbox, in arrival order, and the signal name a
-- suspended step waits for.
CREATE TABLE signals (
	exec         TEXT    NOT NULL REFERENCES executions (id) ON DELETE CASCADE,
	seq          INTEGER NOT NULL, -- arrival order within the execution, from 1
	name         TEXT    NOT NULL,
	payload_type TEXT    NOT NULL,
	payload_data BLOB    NOT NULL,
	sent_at      INTEGER NOT NULL,
	consumed_by  TEXT    NOT NULL, -- the step that received it, or ''
	PRIMARY KEY (exec, seq)
) STRICT;

ALTER TABLE steps ADD COLUMN signal TEXT NOT NULL DEFAULT '';
