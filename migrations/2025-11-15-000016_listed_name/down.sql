ALTER TABLE droplets DROP COLUMN listed_name;
