-- A held task's `tasks` row is as a pending one's: no droplet and no times
-- of a run, which its run row holds. Migration 18 left them in the rows of
-- the tasks it moved; the window statements and the list's droplet filter
-- read `tasks` for every task no droplet holds, and count on it.
UPDATE tasks SET assigned_droplet_id = NULL, assigned_at = NULL, started_at = NULL
WHERE id IN (SELECT task_id FROM task_runs)
  AND (assigned_droplet_id IS NOT NULL OR assigned_at IS NOT NULL OR started_at IS NOT NULL);
