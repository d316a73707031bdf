-- Retention deletes a study's batches by the day they arrived: an index, so that the hourly
-- pass reads only the days it deletes instead of every batch while it holds the writer.
CREATE INDEX batches_by_day ON batches (study_id, received_day);
