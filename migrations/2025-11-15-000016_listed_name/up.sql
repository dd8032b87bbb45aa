-- The name the Registry's directory lists a droplet under. A droplet
-- chooses its own `name` when it registers; only the Registry's name may
-- identify the service a token names, so that a droplet cannot take
-- another service's identity by registering under its name.
ALTER TABLE droplets ADD COLUMN listed_name VARCHAR(100);
