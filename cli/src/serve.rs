//! `chorus serve` and `chorus release`: the aggregation server (seeded with demo contributions
//! on a first run when asked: `demo.rs`), and cutting a release from its store without going
//! through HTTP.

use crate::demo::{self, DemoArgs};
use crate::files::{cache_dir, compiled_study, load_embedder, load_study};
use crate::StudyArgs;
use chorus_server::release::{cut, sign::Signer, ReleaseOptions};
use chorus_server::{storage, AppState, ServerConfig};
use chorus_shared::study::CompiledStudy;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

#[derive(clap::Args)]
pub struct ServerArgs {
    /// Server settings (TOML); flags override them.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Where the SQLite database, the signing key and releases live
    /// [default: $CHORUS_DATA_DIR, or ~/.local/share/chorus].
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// `postgres://user@host/db` to store in PostgreSQL instead of SQLite.
    #[arg(long, value_name = "URL", env = "CHORUS_DATABASE")]
    database: Option<String>,
    /// A study file to serve (repeatable); the default study when none is given.
    #[arg(long = "study-file", value_name = "FILE")]
    studies: Vec<PathBuf>,
    /// Directory holding the pinned model (to compile the studies and to serve the page)
    /// [default: the config file's `model_dir`, else ~/.cache/chorus/model].
    #[arg(long, value_name = "DIR", env = "CHORUS_MODEL_DIR")]
    model_dir: Option<PathBuf>,
}

impl ServerArgs {
    pub(crate) fn config(&self) -> Result<ServerConfig, String> {
        let mut config = match &self.config {
            Some(path) => ServerConfig::load(path)?,
            None => ServerConfig::default(),
        };
        if let Some(dir) = &self.data_dir {
            config.data_dir = dir.clone();
        }
        if let Some(url) = &self.database {
            config.database = Some(url.clone());
        }
        if !self.studies.is_empty() {
            config.studies = self.studies.clone();
        }
        // One model directory, for compiling the studies and for serving the page its files.
        if let Some(dir) = &self.model_dir {
            config.model_dir = Some(dir.clone());
        }
        if config.model_dir.is_none() {
            config.model_dir = Some(cache_dir().join("model"));
        }
        Ok(config)
    }

    /// Every study the server serves, compiled against the pinned model.
    pub(crate) fn studies(&self, config: &ServerConfig) -> Result<Vec<CompiledStudy>, String> {
        let embedder = load_embedder(&StudyArgs {
            study: None,
            model_dir: config.model_dir.clone(),
        })?;
        let files: Vec<Option<PathBuf>> = if config.studies.is_empty() {
            vec![None]
        } else {
            config.studies.iter().cloned().map(Some).collect()
        };
        files
            .into_iter()
            .map(|study| {
                let parsed = load_study(&StudyArgs { study, model_dir: None })?;
                compiled_study(&parsed, &embedder)
            })
            .collect()
    }
}

#[derive(clap::Args)]
pub struct ServeArgs {
    #[command(flatten)]
    server: ServerArgs,
    /// Address to listen on [default: 127.0.0.1:8080].
    #[arg(long, value_name = "ADDR")]
    bind: Option<String>,
    /// The static pages to serve at `/`.
    #[arg(long, value_name = "DIR")]
    www: Option<PathBuf>,
    /// HTTP worker threads [default: the number of cores].
    #[arg(long, value_name = "N")]
    workers: Option<usize>,
    /// Label every release as made from demo contributions.
    #[arg(long)]
    demo: bool,
    #[command(flatten)]
    seed: DemoArgs,
}

pub fn serve(args: ServeArgs) -> Result<ExitCode, String> {
    init_logging();
    let mut config = args.server.config()?;
    if let Some(bind) = args.bind {
        config.bind = bind;
    }
    if args.www.is_some() {
        config.www_dir = args.www;
    }
    if args.workers.is_some() {
        config.workers = args.workers;
    }
    if config.admin_token.is_none() {
        config.admin_token = std::env::var("CHORUS_ADMIN_TOKEN").ok().filter(|t| !t.is_empty());
    }
    let studies = args.server.studies(&config)?;
    let storage: Arc<dyn storage::Storage> = Arc::from(storage::open(&config.database()).map_err(|e| e.to_string())?);
    let first = studies.first().expect("at least the default study").clone();
    let seed = demo::should_seed(&args.seed, storage.as_ref(), &first, &config.data_dir)?;
    config.demo |= args.demo || demo::is_demo(&config.data_dir);
    if seed {
        demo::seed_in_background(demo::Seeding {
            args: args.seed.clone(),
            study: first,
            storage: storage.clone(),
            signing_key: config.signing_key_path(),
            model_dir: config.model_dir.clone(),
            base_url: demo::own_url(&config.bind),
        });
    }
    let state = AppState::new(config, studies, storage)?;
    for entry in state.studies.values() {
        eprintln!("chorus: serving study {}", entry.study.key());
    }
    eprintln!(
        "chorus: listening on http://{} (release signing key {})",
        state.config.bind,
        state.signer.public_key_hex()
    );
    actix_web::rt::System::new()
        .block_on(chorus_server::serve(state))
        .map_err(|e| format!("the server stopped: {e}"))?;
    Ok(ExitCode::SUCCESS)
}

#[derive(clap::Args)]
pub struct ReleaseArgs {
    #[command(flatten)]
    server: ServerArgs,
    /// The id of the study to release [default: the first study served].
    #[arg(long = "study", value_name = "ID")]
    id: Option<String>,
    /// Write the signed release here as well as printing its summary.
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
    /// Label the release as made from demo contributions.
    #[arg(long)]
    demo: bool,
}

pub fn release(args: ReleaseArgs) -> Result<ExitCode, String> {
    let config = args.server.config()?;
    let studies = args.server.studies(&config)?;
    let study = match &args.id {
        Some(id) => studies
            .iter()
            .find(|s| &s.id == id)
            .ok_or_else(|| format!("no study `{id}` among the configured studies"))?,
        None => studies.first().expect("at least the default study"),
    };
    let storage = storage::open(&config.database()).map_err(|e| e.to_string())?;
    let signer = Signer::load_or_create(&config.signing_key_path())?;
    let (summary, signed) = cut(
        storage.as_ref(),
        study,
        &signer,
        &ReleaseOptions {
            demo: args.demo || config.demo || demo::is_demo(&config.data_dir),
        },
    )
    .map_err(|e| e.to_string())?;
    let document = serde_json::to_string_pretty(&signed).expect("a release serialises");
    if let Some(out) = &args.out {
        std::fs::write(out, &document).map_err(|e| format!("cannot write {}: {e}", out.display()))?;
    }
    eprintln!(
        "chorus: release {} of study {} signed with key {}",
        summary.id,
        study.key(),
        signer.public_key_hex()
    );
    println!("{}", serde_json::to_string(&summary).expect("a summary serialises"));
    Ok(ExitCode::SUCCESS)
}

/// Structured logs on stderr (JSON lines; `RUST_LOG` filters, `info` by default).
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}
