//! Retention: each study says how long its reports are kept (`[steward] retention_days`), and
//! the server deletes a batch that many days after the day it arrived — at start, then every
//! hour — whatever else happens. Releases already published keep what they counted.

use crate::storage::{Storage, StorageError};
use std::sync::Arc;
use std::time::Duration;

/// How often the server looks for batches past their retention.
const EVERY: Duration = Duration::from_secs(3600);

/// The first day of arrival still kept on `today`: a batch that arrived on day `d` is kept on
/// days `d .. d + retention_days` and deleted from day `d + retention_days` on.
pub fn first_day_kept(today: i64, retention_days: u32) -> i64 {
    today - i64::from(retention_days) + 1
}

/// Deletes every batch past its study's retention on `today`; returns how many.
pub fn enforce(storage: &dyn Storage, studies: &[(String, u32)], today: i64) -> Result<u64, StorageError> {
    let mut deleted = 0;
    for (study_id, days) in studies {
        deleted += storage.forget_before(study_id, first_day_kept(today, *days))?;
    }
    Ok(deleted)
}

/// Enforces retention now and every hour, on a thread of its own, for as long as the storage is
/// in use. A failure is logged and tried again an hour later.
pub fn start(storage: &Arc<dyn Storage>, studies: Vec<(String, u32)>) {
    let storage = Arc::downgrade(storage);
    std::thread::Builder::new()
        .name("retention".into())
        .spawn(move || loop {
            let Some(storage) = storage.upgrade() else { return };
            match enforce(storage.as_ref(), &studies, crate::ingest::today()) {
                Ok(0) => {}
                Ok(n) => tracing::info!(batches = n, "deleted batches past their study's retention"),
                Err(e) => tracing::error!(error = %e.redacted(), "retention could not be enforced"),
            }
            drop(storage);
            std::thread::sleep(EVERY);
        })
        .expect("the retention thread starts");
}

#[cfg(test)]
mod tests {
    use super::first_day_kept;

    #[test]
    fn a_batch_is_kept_for_exactly_its_retention_days() {
        let arrived = 20_000;
        for days in [1u32, 30, 365] {
            let last_kept = arrived + i64::from(days) - 1;
            assert!(first_day_kept(last_kept, days) <= arrived, "kept on its last day");
            assert!(first_day_kept(last_kept + 1, days) > arrived, "deleted the day after");
        }
    }
}
