//! Redeeming an invitation for contribution tokens, on the device: one token request per report
//! the study takes, kept on the device (as [`PendingTokens`]) from before the request is sent
//! until the issuer's signatures have turned into tokens. The issuer answers a repeated request
//! with the same signatures and refuses any other second use of the invitation, so a device that
//! loses the answer (a dropped connection, a closed tab) must send the very same request again:
//! fresh requests would find the invitation spent.

use super::DeviceError;
use crate::privacy::noise::Noise;
use crate::study::CompiledStudy;
use crate::tokens::{challenge_digest, SavedTokenRequest, Token, TokenPublicKey, TokenRequest};
use chorus_messages::{BlindSignatures, InvitationRedemption};
use serde::{Deserialize, Serialize};

/// Token requests made for one study version under its published key, not yet answered.
/// Holds the blinding secrets: it stays on the device, like the memo.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PendingTokens {
    pub study_id: String,
    pub study_version: String,
    /// The issuer's key (SubjectPublicKeyInfo, hexadecimal) the requests were blinded under.
    key: String,
    requests: Vec<SavedTokenRequest>,
}

impl PendingTokens {
    /// One request per report the study takes, under `key` (the study version's key as
    /// `GET /api/v1/studies/{id}/token-key` publishes it), with nonces from the secure source.
    pub fn new(study: &CompiledStudy, key: &TokenPublicKey, noise: &mut Noise) -> Result<PendingTokens, DeviceError> {
        let count = study.privacy.reports_per_contributor;
        PendingTokens::for_version(&study.id, &study.version, count, key, noise)
    }

    /// `count` requests for a study version's challenge under `key`.
    pub fn for_version(
        study_id: &str,
        study_version: &str,
        count: u32,
        key: &TokenPublicKey,
        noise: &mut Noise,
    ) -> Result<PendingTokens, DeviceError> {
        let challenge = challenge_digest(study_id, study_version);
        let requests = (0..count)
            .map(|_| {
                let mut nonce = [0u8; 32];
                for chunk in nonce.chunks_mut(8) {
                    chunk.copy_from_slice(&noise.uniform_u64()?.to_be_bytes());
                }
                let request =
                    TokenRequest::new(key, challenge, nonce).map_err(|e| DeviceError::Tokens(e.to_string()))?;
                Ok(request.saved())
            })
            .collect::<Result<_, DeviceError>>()?;
        Ok(PendingTokens {
            study_id: study_id.to_owned(),
            study_version: study_version.to_owned(),
            key: hex::encode(key.spki()),
            requests,
        })
    }

    /// What to send to the issuer for `invitation`: the same bytes every time.
    pub fn redemption(&self, invitation: &str) -> InvitationRedemption {
        InvitationRedemption {
            invitation: invitation.trim().to_owned(),
            blinded: self.requests.iter().map(|r| r.blinded_hex().to_owned()).collect(),
        }
    }

    /// The tokens, from the issuer's answer; each signature is checked against the key.
    pub fn finish(self, answer: &BlindSignatures) -> Result<Vec<Token>, DeviceError> {
        if answer.signatures.len() != self.requests.len() {
            return Err(DeviceError::Tokens(format!(
                "the issuer signed {} token inputs, not the {} asked for",
                answer.signatures.len(),
                self.requests.len()
            )));
        }
        let spki = hex::decode(&self.key).map_err(|e| DeviceError::Damaged(e.to_string()))?;
        let key = TokenPublicKey::from_spki(&spki).map_err(|e| DeviceError::Damaged(e.to_string()))?;
        self.requests
            .into_iter()
            .zip(&answer.signatures)
            .map(|(saved, signature)| {
                let signature = hex::decode(signature)
                    .map_err(|_| DeviceError::Tokens("a signature is not hexadecimal".to_owned()))?;
                let request = TokenRequest::restore(saved).map_err(|e| DeviceError::Damaged(e.to_string()))?;
                request
                    .finalize(&key, &signature)
                    .map_err(|e| DeviceError::Tokens(e.to_string()))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tokens::IssuerKey;

    #[test]
    fn pending_tokens_survive_a_round_trip_through_storage_and_make_valid_tokens() {
        let issuer = IssuerKey::generate().unwrap();
        let pending = PendingTokens::for_version("s", "v1", 3, issuer.public(), &mut Noise::Secure).unwrap();
        // Stored, read back (a closed tab), and sent again: the very same request.
        let stored = serde_json::to_string(&pending).unwrap();
        let restored: PendingTokens = serde_json::from_str(&stored).unwrap();
        assert_eq!(restored.redemption("code"), pending.redemption(" code\n"));
        let answer = BlindSignatures {
            signatures: pending
                .redemption("code")
                .blinded
                .iter()
                .map(|b| hex::encode(issuer.issue(&hex::decode(b).unwrap()).unwrap()))
                .collect(),
        };
        let tokens = restored.finish(&answer).unwrap();
        assert_eq!(tokens.len(), 3);
        let challenge = challenge_digest("s", "v1");
        for token in &tokens {
            assert_eq!(issuer.public().verify(token, &challenge), Ok(()));
        }
        // Signatures of other inputs (here: the answer in another order) do not unblind into tokens.
        let mut swapped = answer.clone();
        swapped.signatures.swap(0, 1);
        let forged = swapped;
        assert!(matches!(pending.clone().finish(&forged), Err(DeviceError::Tokens(_))));
        let short = BlindSignatures { signatures: vec![] };
        assert!(matches!(pending.finish(&short), Err(DeviceError::Tokens(_))));
    }
}
