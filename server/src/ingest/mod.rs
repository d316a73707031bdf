//! Ingest: a posted batch is validated ([`validate`]), rate-limited ([`ratelimit`]), and handed
//! to the [`Writer`], which commits batches in groups and answers each only after its group is
//! durable — so a receipt always means "stored", and a crash loses only unacknowledged batches.

pub mod ratelimit;
pub mod validate;

use crate::storage::{NewBatch, Storage, StoreOutcome};
use chorus_messages::ReportBatch;
use sha2::{Digest, Sha256};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::Arc;
use tokio::sync::oneshot;

/// Why a request was refused: an HTTP status, a stable code, and a message a person can act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub status: u16,
    pub code: &'static str,
    pub message: String,
}

impl Rejection {
    pub fn new(status: u16, code: &'static str, message: impl Into<String>) -> Rejection {
        Rejection {
            status,
            code,
            message: message.into(),
        }
    }
    pub fn invalid(message: String) -> Rejection {
        Rejection::new(422, "invalid_batch", message)
    }
    pub fn wrong_study(message: String) -> Rejection {
        Rejection::new(409, "wrong_study_version", message)
    }
    pub fn over_cap(message: String) -> Rejection {
        Rejection::new(409, "over_cap", message)
    }
}

impl std::fmt::Display for Rejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.message, self.code)
    }
}

/// A validated batch as the store takes it.
pub fn new_batch(batch: &ReportBatch, cap: u32, day: i64) -> NewBatch {
    let body = serde_json::to_string(&batch.reports).expect("reports serialise");
    let mut hash = Sha256::new();
    hash.update(batch.study_version.as_bytes());
    hash.update([0]);
    hash.update(batch.contributor.as_bytes());
    hash.update([0]);
    hash.update(body.as_bytes());
    NewBatch {
        study_id: batch.study_id.clone(),
        study_version: batch.study_version.clone(),
        contributor: batch.contributor.clone(),
        idempotency_key: batch.idempotency_key.clone(),
        digest: hex::encode(hash.finalize()),
        reports: batch.reports.len() as u32,
        cap,
        day,
        body,
        token_nonces: batch
            .tokens
            .iter()
            .filter_map(|t| chorus_shared::tokens::Token::from_hex(t).ok())
            .map(|t| t.nonce_hex())
            .collect(),
    }
}

/// Days since 1970-01-01, UTC.
pub fn today() -> i64 {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    (secs / 86_400) as i64
}

struct Job {
    batch: NewBatch,
    reply: oneshot::Sender<Result<StoreOutcome, String>>,
}

/// Group commit: one thread owns the writes; requests queue their batches and wait for the
/// commit of the group that holds theirs.
#[derive(Clone)]
pub struct Writer {
    queue: SyncSender<Job>,
}

/// Most batches committed in one transaction.
const GROUP: usize = 2048;

impl Writer {
    /// Starts the writer thread; `capacity` batches may wait before requests are turned away.
    pub fn start(storage: Arc<dyn Storage>, capacity: usize) -> Writer {
        let (queue, jobs) = sync_channel(capacity);
        std::thread::Builder::new()
            .name("chorus-writer".into())
            .spawn(move || write_loop(storage, jobs))
            .expect("the writer thread starts");
        Writer { queue }
    }

    /// Stores a batch; resolves once it is durable (or was refused).
    pub async fn store(&self, batch: NewBatch) -> Result<StoreOutcome, Rejection> {
        let (reply, answer) = oneshot::channel();
        match self.queue.try_send(Job { batch, reply }) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                return Err(Rejection::new(
                    503,
                    "busy",
                    "the server is busy; retry the same batch shortly",
                ))
            }
            Err(TrySendError::Disconnected(_)) => {
                return Err(Rejection::new(503, "unavailable", "the store is not available"))
            }
        }
        match answer.await {
            Ok(Ok(outcome)) => Ok(outcome),
            Ok(Err(e)) => {
                tracing::error!(error = %e, "storing a batch group failed");
                Err(Rejection::new(
                    503,
                    "store_failed",
                    "the batch could not be stored; retry the same batch",
                ))
            }
            Err(_) => Err(Rejection::new(503, "unavailable", "the store is not available")),
        }
    }
}

fn write_loop(storage: Arc<dyn Storage>, jobs: Receiver<Job>) {
    while let Ok(first) = jobs.recv() {
        let mut group = vec![first];
        while group.len() < GROUP {
            match jobs.try_recv() {
                Ok(job) => group.push(job),
                Err(_) => break,
            }
        }
        let batches: Vec<NewBatch> = group.iter().map(|j| j.batch.clone()).collect();
        match storage.store(&batches) {
            Ok(outcomes) => {
                for (job, outcome) in group.into_iter().zip(outcomes) {
                    let _ = job.reply.send(Ok(outcome));
                }
            }
            Err(e) => {
                let message = e.redacted();
                for job in group {
                    let _ = job.reply.send(Err(message.clone()));
                }
            }
        }
    }
}

/// The receipt a contributor is given for a stored batch: derived from the batch's random key, so
/// that it is the same on every retry and, unlike the batch's place in the store, says nothing of
/// how many others contributed.
pub fn receipt_id(idempotency_key: &str) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(format!("chorus receipt {idempotency_key}").as_bytes());
    hex::encode(&digest[..12])
}
