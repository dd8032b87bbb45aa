-- Nothing to undo: the columns cleared are held in `task_runs`, and
-- migration 18's way back copies them from there.
SELECT 1;
