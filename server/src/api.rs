//! The HTTP API (`/api/v1`, described in `openapi.json`), health and metrics. Handlers parse,
//! delegate to ingest, storage and release, and turn every refusal into a JSON error with a
//! status code. Nothing about a request's origin (address, user agent) is read or logged.

use crate::ingest::ratelimit::Limited;
use crate::ingest::{new_batch, today, validate::validate, Rejection};
use crate::release::{self, csv::to_csv, ReleaseOptions};
use crate::storage::{Receipt, StoreOutcome};
use crate::AppState;
use actix_web::http::StatusCode;
use actix_web::{get, post, web, HttpRequest, HttpResponse, ResponseError};
use chorus_messages::ReportBatch;
use serde_json::json;

pub const OPENAPI: &str = include_str!("../openapi.json");

impl ResponseError for Rejection {
    fn status_code(&self) -> StatusCode {
        StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }
    fn error_response(&self) -> HttpResponse {
        HttpResponse::build(self.status_code()).json(json!({"error": {"code": self.code, "message": self.message}}))
    }
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    // The hot route first: routes are tried in order, each a pattern match.
    cfg.service(post_reports)
        .service(healthz)
        .service(metrics)
        .service(openapi)
        .service(studies)
        .service(study)
        .service(token_key)
        .service(redeem_invitation)
        .service(withdraw)
        .service(releases)
        .service(release_csv)
        .service(release_json)
        .service(public_key)
        .service(model_pins)
        .service(model_file)
        .service(cut_release);
}

/// The pinned model files the contributor's page loads, with the SHA-256 it must check.
#[get("/api/v1/model")]
async fn model_pins() -> HttpResponse {
    let pins = chorus_shared::embed::pins::pins();
    let pin = |p: &chorus_shared::embed::pins::Pin| json!({"file": p.file, "sha256": p.sha256, "url": format!("/api/v1/model/{}", p.file)});
    HttpResponse::Ok().json(json!({"model": pin(&pins.model), "tokenizer": pin(&pins.tokenizer)}))
}

/// One pinned model file, from the configured model directory. Only the two pinned names are
/// served; the bytes never change for a name (the page caches them by hash).
#[get("/api/v1/model/{file}")]
async fn model_file(state: web::Data<AppState>, file: web::Path<String>) -> Result<HttpResponse, Rejection> {
    let pins = chorus_shared::embed::pins::pins();
    let not_found = || Rejection::new(404, "not_found", "no such model file");
    if *file != pins.model.file && *file != pins.tokenizer.file {
        return Err(not_found());
    }
    let dir = state.config.model_dir.clone().ok_or_else(not_found)?;
    let path = dir.join(file.as_str());
    let bytes = web::block(move || std::fs::read(path))
        .await
        .map_err(internal)?
        .map_err(|_| not_found())?;
    Ok(HttpResponse::Ok()
        .content_type("application/octet-stream")
        .insert_header(("Cache-Control", "public, max-age=31536000, immutable"))
        .body(bytes))
}

fn internal(e: impl std::fmt::Display) -> Rejection {
    tracing::error!(error = %e, "internal error");
    Rejection::new(500, "internal", "the server failed; the error is logged")
}

#[get("/healthz")]
async fn healthz(state: web::Data<AppState>) -> Result<HttpResponse, Rejection> {
    let storage = state.storage.clone();
    web::block(move || storage.release_count(""))
        .await
        .map_err(internal)?
        .map_err(|e| {
            tracing::error!(error = %e.redacted(), "health check: storage unavailable");
            Rejection::new(503, "unavailable", "the store is not available")
        })?;
    Ok(HttpResponse::Ok().json(json!({"status": "ok"})))
}

/// The counters behind the admin token: request and batch counts, read in real time, would
/// time every contribution.
#[get("/metrics")]
async fn metrics(state: web::Data<AppState>, request: HttpRequest) -> Result<HttpResponse, Rejection> {
    require_admin(&state, &request)?;
    Ok(HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(state.metrics.render()))
}

/// Admits a request carrying the configured admin bearer token.
fn require_admin(state: &AppState, request: &HttpRequest) -> Result<(), Rejection> {
    let Some(token) = &state.config.admin_token else {
        return Err(Rejection::new(
            403,
            "admin_disabled",
            "no admin token is configured on this server",
        ));
    };
    let given = request
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    if !given.is_some_and(|g| constant_time_eq(g.as_bytes(), token.as_bytes())) {
        return Err(Rejection::new(
            401,
            "unauthorized",
            "a valid admin bearer token is required",
        ));
    }
    Ok(())
}

#[get("/api/v1/openapi.json")]
async fn openapi() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(openapi_document().as_str())
}

/// `openapi.json` with the release document's schemas, generated from its types, among its
/// components.
pub fn openapi_document() -> &'static String {
    static DOCUMENT: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        let mut document: serde_json::Value = serde_json::from_str(OPENAPI).expect("openapi.json is JSON");
        let schemas = document["components"]["schemas"]
            .as_object_mut()
            .expect("openapi.json has component schemas");
        schemas.extend(chorus_shared::release::document::openapi_schemas());
        serde_json::to_string(&document).expect("a JSON value serialises")
    });
    &DOCUMENT
}

#[get("/api/v1/studies")]
async fn studies(state: web::Data<AppState>) -> HttpResponse {
    let list: Vec<_> = state
        .studies
        .values()
        .map(|s| json!({"id": s.study.id, "version": s.study.version, "title": s.study.title}))
        .collect();
    HttpResponse::Ok().json(list)
}

fn unknown_study(id: &str) -> Rejection {
    Rejection::new(404, "unknown_study", format!("there is no study `{id}` on this server"))
}

/// The compiled study a client needs: taxonomy, classifiers, privacy plan. Compressed when the
/// client accepts it (public data, no secret for a compression side channel to reveal).
#[get("/api/v1/studies/{id}", wrap = "actix_web::middleware::Compress::default()")]
async fn study(state: web::Data<AppState>, id: web::Path<String>) -> Result<HttpResponse, Rejection> {
    let entry = state.studies.get(id.as_str()).ok_or_else(|| unknown_study(&id))?;
    Ok(HttpResponse::Ok()
        .content_type("application/json")
        .insert_header(("ETag", format!("\"{}\"", entry.study.version)))
        .body(entry.json.clone()))
}

/// The public key of the study version's contribution tokens (for a study that admits invited
/// contributors only): its SPKI and key id, hexadecimal.
#[get("/api/v1/studies/{id}/token-key")]
async fn token_key(state: web::Data<AppState>, id: web::Path<String>) -> Result<HttpResponse, Rejection> {
    let entry = state.studies.get(id.as_str()).ok_or_else(|| unknown_study(&id))?;
    let key = entry.issuer.as_ref().ok_or_else(|| open_study(&id))?.public();
    Ok(HttpResponse::Ok().json(json!({
        "study_id": entry.study.id,
        "study_version": entry.study.version,
        "token_type": chorus_shared::tokens::TOKEN_TYPE,
        "spki": hex::encode(key.spki()),
        "key_id": hex::encode(key.id()),
    })))
}

fn open_study(id: &str) -> Rejection {
    Rejection::new(
        404,
        "open_study",
        format!("study `{id}` is open to anyone and issues no tokens"),
    )
}

/// Redeems an invitation for blind signatures of the token inputs: the device unblinds them into
/// tokens the server cannot link to this request.
#[post("/api/v1/studies/{id}/tokens")]
async fn redeem_invitation(
    state: web::Data<AppState>,
    id: web::Path<String>,
    body: web::Json<chorus_messages::InvitationRedemption>,
) -> Result<HttpResponse, Rejection> {
    let entry = state
        .studies
        .get(id.as_str())
        .ok_or_else(|| unknown_study(&id))?
        .clone();
    entry.issuer.as_ref().ok_or_else(|| open_study(&id))?;
    let storage = state.storage.clone();
    let body = body.into_inner();
    let signed = web::block(move || {
        let key = entry.issuer.as_ref().expect("checked above");
        crate::invitations::redeem(storage.as_ref(), &entry.study, key, &body.invitation, &body.blinded)
    })
    .await
    .map_err(internal)?;
    use crate::invitations::RedeemError;
    match signed {
        Ok(signatures) => Ok(HttpResponse::Ok().json(chorus_messages::BlindSignatures { signatures })),
        Err(RedeemError::Unknown) => Err(Rejection::new(
            403,
            "unknown_invitation",
            RedeemError::Unknown.to_string(),
        )),
        Err(RedeemError::Spent) => Err(Rejection::new(409, "invitation_spent", RedeemError::Spent.to_string())),
        Err(e @ (RedeemError::WrongCount { .. } | RedeemError::Malformed(_))) => {
            Err(Rejection::new(422, "invalid_token_request", e.to_string()))
        }
        Err(RedeemError::Storage(e)) => Err(Rejection::new(500, "storage", e.redacted())),
    }
}

/// A contributor withdraws a donation with its batch's key: its reports are deleted (releases
/// already published keep what they counted; they are signed and immutable).
#[post("/api/v1/studies/{id}/withdrawals")]
async fn withdraw(
    state: web::Data<AppState>,
    id: web::Path<String>,
    body: web::Json<chorus_messages::Withdrawal>,
) -> Result<HttpResponse, Rejection> {
    if !state.studies.contains_key(id.as_str()) {
        return Err(unknown_study(&id));
    }
    let key = body.into_inner().idempotency_key;
    if !crate::ingest::validate::is_random_id(&key) {
        return Err(Rejection::new(
            422,
            "invalid_withdrawal_code",
            "a withdrawal code is 32 lowercase hexadecimal digits, as the receipt shows it",
        ));
    }
    let storage = state.storage.clone();
    let study_id = id.into_inner();
    let (id_for_store, key_for_store) = (study_id.clone(), key.clone());
    let withdrawn = web::block(move || storage.withdraw(&id_for_store, &key_for_store))
        .await
        .map_err(internal)?
        .map_err(|e| Rejection::new(500, "storage", e.redacted()))?;
    let Some(reports) = withdrawn else {
        return Err(Rejection::new(
            404,
            "no_such_donation",
            "no donation with this withdrawal code is stored for this study (it may have passed its retention period)",
        ));
    };
    state.metrics.count("chorus_withdrawals_total", "", 1);
    Ok(HttpResponse::Ok().json(json!({
        "study_id": study_id, "receipt": crate::ingest::receipt_id(&key), "reports_deleted": reports,
        "already_withdrawn": reports == 0,
    })))
}

#[post("/api/v1/studies/{id}/reports")]
async fn post_reports(
    state: web::Data<AppState>,
    id: web::Path<String>,
    request: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, Rejection> {
    let result = ingest(&state, &id, &request, payload).await;
    match &result {
        Ok((status, _)) => state
            .metrics
            .count("chorus_batches_total", &format!("outcome=\"{status}\""), 1),
        Err(r) => state
            .metrics
            .count("chorus_batches_rejected_total", &format!("code=\"{}\"", r.code), 1),
    }
    let (status, body) = result?;
    Ok(HttpResponse::build(status).json(body))
}

async fn ingest(
    state: &AppState,
    id: &str,
    request: &HttpRequest,
    payload: web::Payload,
) -> Result<(StatusCode, serde_json::Value), Rejection> {
    let entry = state.studies.get(id).ok_or_else(|| unknown_study(id))?;
    state.limiter.check_global().map_err(|_| {
        Rejection::new(
            429,
            "rate_limited",
            "the server takes no more batches right now; retry later",
        )
    })?;
    let limit = state.config.max_body_bytes;
    let too_large = || Rejection::new(413, "too_large", format!("a batch may be at most {limit} bytes"));
    let declared = request
        .headers()
        .get("content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(too_large());
    }
    let body = payload
        .to_bytes_limited(limit)
        .await
        .map_err(|_| too_large())?
        .map_err(|e| Rejection::new(400, "bad_body", format!("the request body could not be read: {e}")))?;
    let batch: ReportBatch = serde_json::from_slice(&body)
        .map_err(|e| Rejection::new(400, "malformed", format!("the body is not a valid ReportBatch: {e}")))?;
    let cap = entry.study.privacy.reports_per_contributor;
    if let Err(refused) = validate(&batch, &entry.study, entry.issuer.as_ref().map(|k| k.public())) {
        return match stored_before(state, &entry.study.id, &batch, cap, &refused).await? {
            Some(r) => Ok((StatusCode::OK, receipt_json(&r, true))),
            None => Err(refused),
        };
    }
    state
        .limiter
        .check_contributor(&batch.contributor)
        .map_err(|l| match l {
            Limited::Contributor => Rejection::new(
                429,
                "rate_limited",
                "too many batches from this contributor; retry later",
            ),
            Limited::Global => Rejection::new(
                429,
                "rate_limited",
                "the server takes no more batches right now; retry later",
            ),
        })?;
    let outcome = state.writer.store(new_batch(&batch, cap, today())).await?;
    match outcome {
        StoreOutcome::Stored(r) => {
            state.metrics.count("chorus_reports_stored_total", "", r.reports as u64);
            Ok((StatusCode::CREATED, receipt_json(&r, false)))
        }
        StoreOutcome::Replayed(r) => Ok((StatusCode::OK, receipt_json(&r, true))),
        StoreOutcome::KeyConflict => Err(Rejection::new(
            409,
            "key_conflict",
            "this idempotency key was used for a different batch; a new batch needs a new key",
        )),
        StoreOutcome::OverCap { stored, cap } => Err(Rejection::over_cap(format!(
            "this contributor has sent {stored} reports; the study takes at most {cap}"
        ))),
        StoreOutcome::TokenSpent => Err(Rejection::new(
            409,
            "token_spent",
            "a token of this batch was spent before; nothing of the batch was stored",
        )),
    }
}

fn receipt_json(r: &Receipt, replayed: bool) -> serde_json::Value {
    json!({"receipt": crate::ingest::receipt_id(&r.idempotency_key), "study_id": r.study_id, "idempotency_key": r.idempotency_key,
           "reports": r.reports, "day": release::date(r.day), "replayed": replayed})
}

/// The receipt of a batch the server stored before, when `batch` is its exact retry and was
/// refused only for its study version: its acknowledgement was lost, and the study has had a
/// new version since. The contributor gets the receipt (and with it the withdrawal code) they
/// would have got; nothing is stored. Any other refusal stands.
async fn stored_before(
    state: &AppState,
    study_id: &str,
    batch: &ReportBatch,
    cap: u32,
    refused: &Rejection,
) -> Result<Option<Receipt>, Rejection> {
    if refused.code != "wrong_study_version" || batch.study_id != study_id {
        return Ok(None);
    }
    let retried = new_batch(batch, cap, today());
    let storage = state.storage.clone();
    web::block(move || storage.stored_receipt(&retried.study_id, &retried.idempotency_key, &retried.digest))
        .await
        .map_err(internal)?
        .map_err(|e| Rejection::new(500, "storage", e.redacted()))
}

#[get("/api/v1/releases")]
async fn releases(state: web::Data<AppState>) -> Result<HttpResponse, Rejection> {
    let storage = state.storage.clone();
    let list = web::block(move || storage.releases())
        .await
        .map_err(internal)?
        .map_err(|e| internal(e.redacted()))?;
    Ok(HttpResponse::Ok().json(list))
}

async fn release_document(state: &AppState, id: String) -> Result<String, Rejection> {
    let storage = state.storage.clone();
    let missing = Rejection::new(404, "unknown_release", format!("there is no release `{id}`"));
    web::block(move || storage.release(&id))
        .await
        .map_err(internal)?
        .map_err(|e| internal(e.redacted()))?
        .ok_or(missing)
}

#[get("/api/v1/releases/{id}")]
async fn release_json(state: web::Data<AppState>, id: web::Path<String>) -> Result<HttpResponse, Rejection> {
    let document = release_document(&state, id.into_inner()).await?;
    Ok(HttpResponse::Ok().content_type("application/json").body(document))
}

#[get("/api/v1/releases/{id}/csv")]
async fn release_csv(state: web::Data<AppState>, id: web::Path<String>) -> Result<HttpResponse, Rejection> {
    let document = release_document(&state, id.into_inner()).await?;
    let value: serde_json::Value = serde_json::from_str(&document).map_err(internal)?;
    Ok(HttpResponse::Ok()
        .content_type("text/csv; charset=utf-8")
        .body(to_csv(&value["release"])))
}

#[get("/api/v1/public-key")]
async fn public_key(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok().json(json!({"algorithm": "ed25519", "public_key": state.signer.public_key_hex()}))
}

/// Cuts a release now (the admin's `chorus release`, over HTTP).
#[post("/api/v1/admin/studies/{id}/releases")]
async fn cut_release(
    state: web::Data<AppState>,
    id: web::Path<String>,
    request: HttpRequest,
) -> Result<HttpResponse, Rejection> {
    require_admin(&state, &request)?;
    let entry = state
        .studies
        .get(id.as_str())
        .ok_or_else(|| unknown_study(&id))?
        .clone();
    let state = state.into_inner();
    let demo = state.config.demo;
    let (summary, _) = web::block(move || {
        release::cut(
            state.storage.as_ref(),
            &entry.study,
            &state.signer,
            &ReleaseOptions { demo },
        )
    })
    .await
    .map_err(internal)?
    .map_err(release_rejection)?;
    Ok(HttpResponse::Created().json(summary))
}

/// A release that could not be cut: nothing to release yet, a concurrent cut, or a spent
/// budget over changed reports is the admin's to act on (409); a failing store or mechanism is
/// the server's (500), its database message left out.
fn release_rejection(e: release::ReleaseError) -> Rejection {
    use crate::storage::StorageError;
    use release::ReleaseError;
    match e {
        ReleaseError::NoReports { .. }
        | ReleaseError::BudgetSpent { .. }
        | ReleaseError::Storage(StorageError::ReleaseExists(_)) => Rejection::new(409, "release_failed", e.to_string()),
        other => {
            tracing::error!(error = %other.redacted(), "a release failed");
            Rejection::new(500, "release_failed", other.redacted())
        }
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A fixed name for a request's route, for logs and metrics (computed from the path by hand:
/// asking the router again would match every pattern a second time).
pub fn route_label(path: &str) -> &'static str {
    let rest = path.strip_prefix("/api/v1/");
    match rest {
        Some(r) if r.starts_with("studies/") && r.ends_with("/reports") => "reports",
        Some(r) if r.starts_with("studies/") && r.ends_with("/tokens") => "tokens",
        Some(r) if r.starts_with("studies/") && r.ends_with("/withdrawals") => "withdrawals",
        Some(r) if r.starts_with("studies/") && r.ends_with("/token-key") => "token_key",
        Some(r) if r.starts_with("studies/") => "study",
        Some("studies") => "studies",
        Some(r) if r.starts_with("releases/") && r.ends_with("/csv") => "release_csv",
        Some(r) if r.starts_with("releases/") => "release",
        Some("releases") => "releases",
        Some("public-key") => "public_key",
        Some("openapi.json") => "openapi",
        Some(r) if r.starts_with("model") => "model",
        Some(r) if r.starts_with("admin/") => "admin",
        Some(_) => "api_other",
        None if path == "/healthz" => "healthz",
        None if path == "/metrics" => "metrics",
        None => "static",
    }
}
