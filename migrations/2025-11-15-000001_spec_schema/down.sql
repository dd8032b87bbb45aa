DROP TABLE heartbeats;
DROP TABLE task_state_history;
DROP TABLE tasks;
DROP TABLE droplets;
