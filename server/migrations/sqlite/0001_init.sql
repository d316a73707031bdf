-- Batches of privatized reports, as received. No IP address, user agent or time of day.
CREATE TABLE batches (
    id INTEGER PRIMARY KEY,
    study_id TEXT NOT NULL,
    study_version TEXT NOT NULL,
    idempotency_key TEXT NOT NULL,
    contributor TEXT NOT NULL,
    digest TEXT NOT NULL,
    reports INTEGER NOT NULL,
    received_day INTEGER NOT NULL,
    body TEXT NOT NULL,
    UNIQUE (study_id, idempotency_key)
);
CREATE INDEX batches_by_study ON batches (study_id, study_version, id);

-- Reports stored per contributor and study version, to enforce the study's cap.
CREATE TABLE contributors (
    study_id TEXT NOT NULL,
    study_version TEXT NOT NULL,
    contributor TEXT NOT NULL,
    reports INTEGER NOT NULL,
    PRIMARY KEY (study_id, study_version, contributor)
);

-- Signed releases, immutable once written.
CREATE TABLE releases (
    id TEXT PRIMARY KEY,
    study_id TEXT NOT NULL,
    created TEXT NOT NULL,
    document TEXT NOT NULL
);
CREATE TRIGGER releases_are_immutable BEFORE UPDATE ON releases
BEGIN
    SELECT RAISE(ABORT, 'releases are immutable');
END;
CREATE TRIGGER releases_are_never_deleted BEFORE DELETE ON releases
BEGIN
    SELECT RAISE(ABORT, 'releases are immutable');
END;
