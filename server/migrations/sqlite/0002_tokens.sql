-- Invitations to a study open to invited contributors only. Only a hash of each code is kept;
-- no time, no address. `redeemed` holds the SHA-256 of the blinded requests the code paid for
-- (so a retried redemption gets the same signatures, and no more), null until then.
CREATE TABLE invitations (
    study_id TEXT NOT NULL,
    code_hash TEXT NOT NULL,
    redeemed TEXT,
    PRIMARY KEY (study_id, code_hash)
);

-- The nonces of contribution tokens spent: a token counts once. Nothing here names the
-- invitation that paid for a token (blind signatures: the issuer never saw the token).
CREATE TABLE spent_tokens (
    study_id TEXT NOT NULL,
    nonce TEXT NOT NULL,
    PRIMARY KEY (study_id, nonce)
);
