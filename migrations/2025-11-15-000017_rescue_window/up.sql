-- The history rows of rescues (recovery moves and refused reports) by
-- time: the routing statistics count a window of them, and rescues are a
-- small part of the history, so the window reads only them. Rows of
-- ordinary transitions are not in it and cost it nothing.
CREATE INDEX idx_task_history_rescues ON task_state_history (changed_at)
    WHERE metadata ? 'recovery' OR metadata ? 'refused';
