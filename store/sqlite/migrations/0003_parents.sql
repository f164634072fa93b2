-- Child executions remember their parent execution and the step that
-- called them, so that finishing wakes the parent.
ALTER TABLE executions ADD COLUMN parent TEXT NOT NULL DEFAULT '';
ALTER TABLE executions ADD COLUMN parent_step TEXT NOT NULL DEFAULT '';
