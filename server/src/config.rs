//! `chorus serve --config FILE`: the server's settings, all optional.

use serde::Deserialize;
use std::path::PathBuf;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address to listen on.
    pub bind: String,
    /// Where the SQLite database, the release signing key and release files live.
    pub data_dir: PathBuf,
    /// `postgres://…` to store in PostgreSQL; SQLite under `data_dir` when absent.
    pub database: Option<String>,
    /// Study files to serve; the default study when empty.
    pub studies: Vec<PathBuf>,
    /// The static pages to serve at `/` (the `www/` folder).
    pub www_dir: Option<PathBuf>,
    /// The directory of the pinned model files, served to the contributor's page at
    /// `/api/v1/model/{file}` (the page checks their SHA-256 before use).
    pub model_dir: Option<PathBuf>,
    /// Bearer token of the admin endpoints; they are disabled without one.
    pub admin_token: Option<String>,
    /// Largest request body accepted.
    pub max_body_bytes: usize,
    /// Batches one contributor pseudonym may post per minute.
    pub per_contributor_per_minute: f64,
    /// Batches the whole server accepts per second.
    pub global_per_second: f64,
    /// Batches that may wait for the writer before requests are turned away with 503.
    pub queue: usize,
    /// HTTP worker threads [default: the number of cores].
    pub workers: Option<usize>,
    /// The stored reports are demo contributions (public conversations run through the client
    /// pipeline); every release says so.
    pub demo: bool,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            bind: "127.0.0.1:8080".into(),
            data_dir: default_data_dir(),
            database: None,
            studies: Vec::new(),
            www_dir: None,
            model_dir: None,
            admin_token: None,
            max_body_bytes: 1 << 20,
            per_contributor_per_minute: 30.0,
            global_per_second: 100_000.0,
            queue: 50_000,
            workers: None,
            demo: false,
        }
    }
}

impl ServerConfig {
    pub fn load(path: &std::path::Path) -> Result<ServerConfig, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// The database to open: the configured one, or SQLite under the data directory.
    pub fn database(&self) -> String {
        self.database
            .clone()
            .unwrap_or_else(|| self.data_dir.join("chorus.sqlite3").to_string_lossy().into_owned())
    }

    pub fn signing_key_path(&self) -> PathBuf {
        self.data_dir.join("release-signing-key")
    }
}

/// `$CHORUS_DATA_DIR`, else `$XDG_DATA_HOME/chorus`, else `~/.local/share/chorus`.
pub fn default_data_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("CHORUS_DATA_DIR") {
        return dir.into();
    }
    std::env::var_os("XDG_DATA_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")))
        .unwrap_or_else(|| PathBuf::from("."))
        .join("chorus")
}
