//! The Chorus aggregation server. The data flow on this side, one module a stage:
//! [`ingest`] (validate, rate-limit, group-commit a posted `ReportBatch`) → [`storage`]
//! (SQLite or PostgreSQL) → [`analyze`] (estimates from the privatized reports) →
//! [`release`] (thresholds, central DP, signed documents). [`api`] is the HTTP surface.
//!
//! The server only ever sees what `chorus_messages::ReportBatch` carries; it stores no
//! IP address or user agent, and its logs and metrics hold no report contents or pseudonyms.

pub mod analyze;
pub mod api;
pub mod config;
pub mod discover;
pub mod ingest;
pub mod invitations;
pub mod metrics;
pub mod release;
pub mod retention;
pub mod storage;

use actix_web::{middleware, web, App, HttpServer};
use chorus_shared::study::CompiledStudy;
pub use config::ServerConfig;
use ingest::ratelimit::RateLimiter;
use ingest::Writer;
use release::sign::Signer;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;
use storage::Storage;

/// A study as served: the compiled study and its JSON, serialised once; for a study that admits
/// invited contributors only, its version's token issuer key.
pub struct StudyEntry {
    pub study: CompiledStudy,
    pub json: String,
    pub issuer: Option<chorus_shared::tokens::IssuerKey>,
}

pub struct AppState {
    pub config: ServerConfig,
    pub studies: BTreeMap<String, Arc<StudyEntry>>,
    pub storage: Arc<dyn Storage>,
    pub writer: Writer,
    pub limiter: RateLimiter,
    pub metrics: metrics::Metrics,
    pub signer: Signer,
}

impl AppState {
    pub fn new(
        config: ServerConfig,
        studies: Vec<CompiledStudy>,
        storage: Arc<dyn Storage>,
    ) -> Result<AppState, String> {
        let signer = Signer::load_or_create(&config.signing_key_path())?;
        let writer = Writer::start(storage.clone(), config.queue);
        let limiter = RateLimiter::new(config.per_contributor_per_minute, config.global_per_second);
        let studies = studies
            .into_iter()
            .map(|study| {
                let json = serde_json::to_string(&study).expect("a compiled study serialises");
                let issuer = match study.access {
                    chorus_shared::study::Access::Invited => Some(invitations::issuer_key(&config.data_dir, &study)?),
                    chorus_shared::study::Access::Open => None,
                };
                Ok((study.id.clone(), Arc::new(StudyEntry { study, json, issuer })))
            })
            .collect::<Result<BTreeMap<_, _>, String>>()?;
        retention::start(
            &storage,
            studies
                .values()
                .map(|e| (e.study.id.clone(), e.study.steward.retention_days))
                .collect(),
        );
        Ok(AppState {
            config,
            studies,
            storage,
            writer,
            limiter,
            metrics: metrics::Metrics::default(),
            signer,
        })
    }
}

/// Runs the server until SIGINT or SIGTERM; in-flight requests finish first.
pub async fn serve(state: AppState) -> std::io::Result<()> {
    let state = web::Data::new(state);
    let bind = state.config.bind.clone();
    let workers = state.config.workers;
    let www = state.config.www_dir.clone();
    let data = state.clone();
    let mut server = HttpServer::new(move || {
        let metrics = data.clone();
        let mut app = App::new()
            .app_data(data.clone())
            .wrap(
                middleware::DefaultHeaders::new()
                    .add(("Content-Security-Policy", CSP))
                    .add(("X-Content-Type-Options", "nosniff")),
            )
            .wrap_fn(move |request, service| {
                use actix_web::dev::Service;
                // Method, route pattern, status and duration: nothing about who asked.
                let (method, started) = (request.method().to_string(), Instant::now());
                let route = api::route_label(request.path());
                let metrics = metrics.clone();
                let response = service.call(request);
                async move {
                    let response = response.await?;
                    let (status, elapsed) = (response.status().as_u16(), started.elapsed().as_secs_f64());
                    metrics.metrics.observe_latency(elapsed);
                    metrics.metrics.count(
                        "chorus_http_requests_total",
                        &format!("route=\"{route}\",status=\"{status}\""),
                        1,
                    );
                    // Accepted requests at debug (thousands a second under load); refusals
                    // at info, failures at warn.
                    match status {
                        500.. => tracing::warn!(%method, %route, status, ms = elapsed * 1e3, "request"),
                        400.. => tracing::info!(%method, %route, status, ms = elapsed * 1e3, "request"),
                        _ => tracing::debug!(%method, %route, status, ms = elapsed * 1e3, "request"),
                    }
                    Ok(response)
                }
            })
            .configure(api::routes);
        if let Some(dir) = &www {
            app = app.service(actix_files::Files::new("/", dir).index_file("index.html"));
        }
        app
    })
    .shutdown_timeout(30);
    if let Some(n) = workers {
        server = server.workers(n);
    }
    tracing::info!(%bind, "listening");
    server.bind(&bind)?.run().await
}

/// Everything the pages need comes from this server; `wasm-unsafe-eval` lets the client's
/// WebAssembly compile.
const CSP: &str = "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; style-src 'self'; img-src 'self' data:; connect-src 'self'; worker-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'";
