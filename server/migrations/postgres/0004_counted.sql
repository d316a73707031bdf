-- What each release counted: a digest of the stored batches it read, kept by the server and
-- never published. Once a version's central budget is spent, a release may only re-publish
-- the last noisy counts over the same reports; this is how the server knows they are the same.
ALTER TABLE releases ADD COLUMN counted TEXT;
