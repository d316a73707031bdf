//! Anonymous one-time contribution tokens: Privacy Pass's publicly verifiable tokens (RFC 9578,
//! token type 0x0002), whose issuance is a blind RSA signature (RFC 9474,
//! RSABSSA-SHA384-PSS-Deterministic, 2048-bit keys) from the maintained `blind-rsa-signatures`
//! crate; nothing here is hand-rolled cryptography, only the token's layout.
//!
//! A device holding an invitation asks the study's issuer to sign blinded token inputs, one per
//! report; it unblinds the signatures into tokens and sends one with each report. The issuer
//! saw only blinded messages, so a token cannot be joined to the invitation that paid for it
//! (the blinding is information-theoretically hiding: every token is equally likely to come from
//! any issuance); anyone with the public key can check a token, and the server records each
//! token's nonce so that it counts once.
//!
//! A token also fixes the randomness a report may not choose: an OLH report's hash seed is
//! derived from the token's authenticator, which the device cannot compute before the issuer
//! signs (so it cannot search for a seed that supports several values at once).

use blind_rsa_signatures::{
    BlindMessage, BlindSignature, BlindingResult, DefaultRng, KeyPairSha384PSSDeterministic, Secret, Signature,
};
use blind_rsa_signatures::{
    PublicKeySha384PSSDeterministic as PublicKey, SecretKeySha384PSSDeterministic as SecretKey,
};
use sha2::{Digest, Sha256};

/// Privacy Pass token type 0x0002: blind RSA, 2048-bit keys.
pub const TOKEN_TYPE: u16 = 0x0002;
/// Modulus size of an issuer key, in bits.
pub const KEY_BITS: usize = 2048;
/// Bytes of a token's authenticator (the RSA signature).
const NK: usize = KEY_BITS / 8;
/// Bytes of an encoded token: type, nonce, challenge digest, key id, authenticator.
pub const TOKEN_BYTES: usize = 2 + 32 + 32 + 32 + NK;
/// Who issues a Chorus study's tokens, as the challenge names it.
const ISSUER_NAME: &str = "chorus";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    #[error("a token is {TOKEN_BYTES} bytes as {} hexadecimal digits", 2 * TOKEN_BYTES)]
    Malformed,
    #[error("the token is of type {0:#06x}, not {TOKEN_TYPE:#06x} (publicly verifiable blind RSA)")]
    WrongType(u16),
    #[error("the token was issued for another study or version")]
    WrongChallenge,
    #[error("the token was issued under another key")]
    WrongKey,
    #[error("the token's signature does not verify")]
    Forged,
    #[error("the issuer key cannot be used: {0}")]
    Key(String),
}

/// The challenge a study version's tokens answer (RFC 9578's TokenChallenge): the token type,
/// the issuer's name, a redemption context binding the token to one study version, and the
/// study as the origin. Its SHA-256 is in every token.
pub fn challenge_digest(study_id: &str, study_version: &str) -> [u8; 32] {
    let context: [u8; 32] = Sha256::digest(format!("{study_id}@{study_version}")).into();
    let mut challenge = Vec::new();
    challenge.extend_from_slice(&TOKEN_TYPE.to_be_bytes());
    challenge.extend_from_slice(&(ISSUER_NAME.len() as u16).to_be_bytes());
    challenge.extend_from_slice(ISSUER_NAME.as_bytes());
    challenge.push(32);
    challenge.extend_from_slice(&context);
    challenge.extend_from_slice(&(study_id.len() as u16).to_be_bytes());
    challenge.extend_from_slice(study_id.as_bytes());
    Sha256::digest(&challenge).into()
}

/// A study version's issuer key (kept by the server, never published).
pub struct IssuerKey {
    secret: SecretKey,
    public: TokenPublicKey,
}

/// The public half of an issuer key, as published with the study: its SPKI (DER, RSASSA-PSS
/// parameters) and the key id tokens carry, the SHA-256 of that SPKI.
#[derive(Clone)]
pub struct TokenPublicKey {
    key: PublicKey,
    spki: Vec<u8>,
    id: [u8; 32],
}

impl IssuerKey {
    /// A fresh key from the operating system's secure generator.
    pub fn generate() -> Result<IssuerKey, TokenError> {
        let pair = KeyPairSha384PSSDeterministic::generate(&mut DefaultRng, KEY_BITS).map_err(key_error)?;
        IssuerKey::from_secret(pair.sk)
    }

    /// The key from its PKCS#1 DER encoding (as [`IssuerKey::to_der`] wrote it).
    pub fn from_der(der: &[u8]) -> Result<IssuerKey, TokenError> {
        IssuerKey::from_secret(SecretKey::from_der(der).map_err(key_error)?)
    }

    pub fn to_der(&self) -> Result<Vec<u8>, TokenError> {
        self.secret.to_der().map_err(key_error)
    }

    fn from_secret(secret: SecretKey) -> Result<IssuerKey, TokenError> {
        let public = TokenPublicKey::new(secret.public_key().map_err(key_error)?)?;
        Ok(IssuerKey { secret, public })
    }

    pub fn public(&self) -> &TokenPublicKey {
        &self.public
    }

    /// Signs one blinded token input (what [`TokenRequest::blinded`] sent). The issuer learns
    /// nothing of the token it helps make.
    pub fn issue(&self, blinded: &[u8]) -> Result<Vec<u8>, TokenError> {
        if blinded.len() != NK {
            return Err(TokenError::Malformed);
        }
        Ok(self.secret.blind_sign(blinded).map_err(|_| TokenError::Malformed)?.0)
    }
}

fn key_error(e: blind_rsa_signatures::Error) -> TokenError {
    TokenError::Key(e.to_string())
}

impl TokenPublicKey {
    fn new(key: PublicKey) -> Result<TokenPublicKey, TokenError> {
        let spki = key.to_spki().map_err(key_error)?;
        let id = Sha256::digest(&spki).into();
        Ok(TokenPublicKey { key, spki, id })
    }

    /// The key from its SPKI encoding (as published).
    pub fn from_spki(spki: &[u8]) -> Result<TokenPublicKey, TokenError> {
        TokenPublicKey::new(PublicKey::from_spki(spki).map_err(key_error)?)
    }

    pub fn spki(&self) -> &[u8] {
        &self.spki
    }

    pub fn id(&self) -> [u8; 32] {
        self.id
    }

    /// Checks that `token` answers the study version's challenge under this key.
    pub fn verify(&self, token: &Token, challenge_digest: &[u8; 32]) -> Result<(), TokenError> {
        if token.challenge_digest != *challenge_digest {
            return Err(TokenError::WrongChallenge);
        }
        if token.key_id != self.id {
            return Err(TokenError::WrongKey);
        }
        self.key
            .verify(&Signature(token.authenticator.clone()), None, token.input())
            .map_err(|_| TokenError::Forged)
    }
}

/// A token, as a batch carries it (hexadecimal, [`TOKEN_BYTES`] bytes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    pub nonce: [u8; 32],
    pub challenge_digest: [u8; 32],
    pub key_id: [u8; 32],
    pub authenticator: Vec<u8>,
}

impl Token {
    /// What the issuer signs: type, nonce, challenge digest and key id.
    fn input(&self) -> Vec<u8> {
        token_input(&self.nonce, &self.challenge_digest, &self.key_id)
    }

    pub fn to_hex(&self) -> String {
        let mut bytes = self.input();
        bytes.extend_from_slice(&self.authenticator);
        hex::encode(bytes)
    }

    pub fn from_hex(text: &str) -> Result<Token, TokenError> {
        let bytes = hex::decode(text).map_err(|_| TokenError::Malformed)?;
        if bytes.len() != TOKEN_BYTES {
            return Err(TokenError::Malformed);
        }
        let kind = u16::from_be_bytes([bytes[0], bytes[1]]);
        if kind != TOKEN_TYPE {
            return Err(TokenError::WrongType(kind));
        }
        let field = |at: usize| -> [u8; 32] { bytes[at..at + 32].try_into().expect("32 bytes") };
        Ok(Token {
            nonce: field(2),
            challenge_digest: field(34),
            key_id: field(66),
            authenticator: bytes[98..].to_vec(),
        })
    }

    /// The nonce, hexadecimal: what the server records so that a token counts once.
    pub fn nonce_hex(&self) -> String {
        hex::encode(self.nonce)
    }

    /// The hash seed of an OLH report on `channel` made with this token: fixed by the issuer's
    /// signature, which the device learns only after it asked for the token.
    pub fn olh_seed(&self, channel: &str) -> u64 {
        let mut hash = Sha256::new();
        hash.update(b"chorus olh seed\0");
        hash.update(&self.authenticator);
        hash.update(channel.as_bytes());
        let digest = hash.finalize();
        u64::from_be_bytes(digest[..8].try_into().expect("8 bytes"))
    }
}

fn token_input(nonce: &[u8; 32], challenge_digest: &[u8; 32], key_id: &[u8; 32]) -> Vec<u8> {
    let mut input = Vec::with_capacity(TOKEN_BYTES - NK);
    input.extend_from_slice(&TOKEN_TYPE.to_be_bytes());
    input.extend_from_slice(nonce);
    input.extend_from_slice(challenge_digest);
    input.extend_from_slice(key_id);
    input
}

/// A device's request for one token: the blinded input it sends, and what it keeps to unblind
/// the issuer's answer.
#[derive(Debug)]
pub struct TokenRequest {
    nonce: [u8; 32],
    challenge_digest: [u8; 32],
    key_id: [u8; 32],
    blinding: BlindingResult,
}

impl TokenRequest {
    /// A request under `key` for the study version's challenge, with a fresh `nonce` (32 bytes
    /// from the device's secure source) and blinding from the operating system's generator.
    pub fn new(key: &TokenPublicKey, challenge_digest: [u8; 32], nonce: [u8; 32]) -> Result<TokenRequest, TokenError> {
        let input = token_input(&nonce, &challenge_digest, &key.id);
        let blinding = key.key.blind(&mut DefaultRng, &input).map_err(key_error)?;
        Ok(TokenRequest {
            nonce,
            challenge_digest,
            key_id: key.id,
            blinding,
        })
    }

    /// What the issuer sees: the blinded token input.
    pub fn blinded(&self) -> &[u8] {
        &self.blinding.blind_message.0
    }

    /// The request as the device stores it until the issuer answers (its blinding secret
    /// included: it never leaves the device).
    pub fn saved(&self) -> SavedTokenRequest {
        SavedTokenRequest {
            nonce: hex::encode(self.nonce),
            challenge_digest: hex::encode(self.challenge_digest),
            key_id: hex::encode(self.key_id),
            blinded: hex::encode(&self.blinding.blind_message.0),
            secret: hex::encode(&self.blinding.secret.0),
        }
    }

    /// A stored request, to unblind the issuer's answer to it.
    pub fn restore(saved: SavedTokenRequest) -> Result<TokenRequest, TokenError> {
        let bytes32 = |text: &str| -> Result<[u8; 32], TokenError> {
            hex::decode(text)
                .ok()
                .and_then(|b| b.try_into().ok())
                .ok_or(TokenError::Malformed)
        };
        let bytes = |text: &str| hex::decode(text).map_err(|_| TokenError::Malformed);
        Ok(TokenRequest {
            nonce: bytes32(&saved.nonce)?,
            challenge_digest: bytes32(&saved.challenge_digest)?,
            key_id: bytes32(&saved.key_id)?,
            blinding: BlindingResult {
                blind_message: BlindMessage(bytes(&saved.blinded)?),
                secret: Secret(bytes(&saved.secret)?),
                // RSABSSA-…-Deterministic prepares no randomizer.
                msg_randomizer: None,
            },
        })
    }

    /// The token, from the issuer's blind signature (checked against the key).
    pub fn finalize(self, key: &TokenPublicKey, blind_signature: &[u8]) -> Result<Token, TokenError> {
        let input = token_input(&self.nonce, &self.challenge_digest, &self.key_id);
        let signature = key
            .key
            .finalize(&BlindSignature(blind_signature.to_vec()), &self.blinding, &input)
            .map_err(|_| TokenError::Forged)?;
        Ok(Token {
            nonce: self.nonce,
            challenge_digest: self.challenge_digest,
            key_id: self.key_id,
            authenticator: signature.0,
        })
    }
}

/// A [`TokenRequest`] as stored on the device, every field hexadecimal.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SavedTokenRequest {
    nonce: String,
    challenge_digest: String,
    key_id: String,
    blinded: String,
    secret: String,
}

impl SavedTokenRequest {
    /// The blinded input the issuer signs, hexadecimal.
    pub fn blinded_hex(&self) -> &str {
        &self.blinded
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(issuer: &IssuerKey, challenge: [u8; 32], nonce: u8) -> Token {
        let request = TokenRequest::new(issuer.public(), challenge, [nonce; 32]).unwrap();
        let signed = issuer.issue(request.blinded()).unwrap();
        request.finalize(issuer.public(), &signed).unwrap()
    }

    #[test]
    fn a_token_verifies_once_issued_and_nothing_else_does() {
        let issuer = IssuerKey::generate().unwrap();
        let other = IssuerKey::generate().unwrap();
        let challenge = challenge_digest("s", "v1");
        let good = token(&issuer, challenge, 7);
        let key = TokenPublicKey::from_spki(issuer.public().spki()).unwrap();
        assert_eq!(
            key.verify(&Token::from_hex(&good.to_hex()).unwrap(), &challenge),
            Ok(())
        );
        assert_eq!(good.to_hex().len(), 2 * TOKEN_BYTES);

        // Another study version's challenge, another key, a forged or altered token.
        assert_eq!(
            key.verify(&good, &challenge_digest("s", "v2")),
            Err(TokenError::WrongChallenge)
        );
        assert_eq!(
            key.verify(&good, &challenge_digest("t", "v1")),
            Err(TokenError::WrongChallenge)
        );
        assert_eq!(
            key.verify(&token(&other, challenge, 7), &challenge),
            Err(TokenError::WrongKey)
        );
        let mut forged = good.clone();
        forged.authenticator[17] ^= 1;
        assert_eq!(key.verify(&forged, &challenge), Err(TokenError::Forged));
        let mut renonced = good.clone();
        renonced.nonce[0] ^= 1;
        assert_eq!(key.verify(&renonced, &challenge), Err(TokenError::Forged));
        let mut wrong_type = good.to_hex();
        wrong_type.replace_range(0..4, "0001");
        assert_eq!(Token::from_hex(&wrong_type), Err(TokenError::WrongType(1)));
        assert_eq!(Token::from_hex("00"), Err(TokenError::Malformed));

        // The issuer's key survives a round trip through its encoding.
        let reloaded = IssuerKey::from_der(&issuer.to_der().unwrap()).unwrap();
        assert_eq!(reloaded.public().id(), issuer.public().id());
        assert_eq!(key.verify(&token(&reloaded, challenge, 9), &challenge), Ok(()));
    }

    #[test]
    fn what_the_issuer_sees_is_not_the_token() {
        let issuer = IssuerKey::generate().unwrap();
        let challenge = challenge_digest("s", "v1");
        let request = TokenRequest::new(issuer.public(), challenge, [3; 32]).unwrap();
        let blinded = request.blinded().to_vec();
        let signed = issuer.issue(&blinded).unwrap();
        let token = request.finalize(issuer.public(), &signed).unwrap();
        // The issuer's view (blinded input, blind signature) and the token share no 8-byte run.
        let redeemed = hex::decode(token.to_hex()).unwrap();
        for view in [&blinded, &signed] {
            assert!(!view.windows(8).any(|w| redeemed.windows(8).any(|r| r == w)));
        }
        // The same nonce blinded twice looks different each time.
        let again = TokenRequest::new(issuer.public(), challenge, [3; 32]).unwrap();
        assert_ne!(again.blinded(), blinded.as_slice());
        // A seed per channel, fixed by the signature.
        assert_ne!(token.olh_seed("category"), token.olh_seed("topic"));
        assert_eq!(
            token.olh_seed("category"),
            Token::from_hex(&token.to_hex()).unwrap().olh_seed("category")
        );
    }
}
