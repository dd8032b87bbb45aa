ALTER TABLE tasks DROP COLUMN retry_after;
