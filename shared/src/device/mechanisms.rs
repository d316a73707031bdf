//! Fingerprints of the mechanisms a study's reports are made with, one per channel: a value a
//! device drew for one version of a study is re-sent for a later version whose fingerprint for
//! that channel is the same (the same public domain, the same oracle and budget, the same
//! classifier or codebook computing the value), as RAPPOR's permanent randomized response does.
//! Re-sending a value that already left the device reveals nothing new, so it costs nothing.

use crate::study::CompiledStudy;
use chorus_messages::Channel;
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

/// What makes each part of a report what it is, for one compiled study.
#[derive(Debug, Clone, PartialEq)]
pub struct Mechanisms {
    pub channels: BTreeMap<Channel, String>,
    pub embedding: Option<String>,
    /// Per sampled pool: a fingerprint of its members (a report's choice among them is redrawn
    /// when they change).
    pub pools: BTreeMap<String, String>,
}

/// 128 bits of SHA-256 over a value's JSON.
fn fingerprint<T: Serialize + ?Sized>(value: &T) -> String {
    let json = serde_json::to_vec(value).expect("fingerprinted values serialise");
    hex::encode(&Sha256::digest(&json)[..16])
}

/// The fingerprints of every channel, the embedding and the pools of `study`. Everything that
/// computes a channel's value on the device is part of it, so a value is re-used only when the
/// device would compute the same thing today: the compiled format (the analysis code), the
/// model and how much of a text it reads, and the classifier, concern scale or codebook the
/// channel reads.
pub fn mechanisms(study: &CompiledStudy) -> Mechanisms {
    let plan = &study.privacy;
    let base = (&study.format, &study.model_sha256, &study.max_tokens);
    let channels = plan
        .channels
        .iter()
        .map(|c| {
            let input: String = match c.channel {
                Channel::Category => fingerprint(&study.classifier),
                Channel::Concern => {
                    fingerprint(&(study.concern_threshold, &study.concern_prototypes, &study.concern_terms))
                }
                Channel::TopicTop | Channel::TopicMid | Channel::TopicLeaf => fingerprint(&study.codebook),
                Channel::Language | Channel::Turns | Channel::HasCode => String::new(),
            };
            let oracle = (&c.channel, &c.labels, &c.oracle);
            (c.channel, fingerprint(&(base, oracle, input)))
        })
        .collect();
    let embedding = plan.embedding.as_ref().map(|e| fingerprint(&(base, e)));
    let pools = plan
        .pools()
        .into_iter()
        .map(|(name, members)| {
            let members: Vec<Channel> = members.iter().map(|c| c.channel).collect();
            (name.to_owned(), fingerprint(&members))
        })
        .collect();
    Mechanisms {
        channels,
        embedding,
        pools,
    }
}
