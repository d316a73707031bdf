//! Helpers shared by the integration tests: where the fixtures, the built `chorus` binary and
//! the cached model and corpus are.

pub mod invited;
pub mod load;
pub mod release_fields;

use std::path::{Path, PathBuf};

pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures").join(name)
}

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ is in the workspace")
        .to_path_buf()
}

/// The `chorus` binary of the profile these tests were built with.
pub fn chorus_bin() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/<test> → target/<profile>/chorus
    let path = exe
        .parent()
        .and_then(Path::parent)
        .expect("target layout")
        .join("chorus");
    assert!(
        path.exists(),
        "{} is missing: build it first (`cargo build --release --workspace`)",
        path.display()
    );
    path
}

/// `$CHORUS_CACHE_DIR`, else `$XDG_CACHE_HOME/chorus`, else `~/.cache/chorus`.
pub fn cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("CHORUS_CACHE_DIR") {
        return dir.into();
    }
    std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(|| PathBuf::from(".cache"))
        .join("chorus")
}

/// A file the test command fetched into the cache (`cargo xtask fetch --corpus`); a missing
/// file fails the test loudly rather than skipping it.
pub fn cached(relative: &str) -> PathBuf {
    let path = cache_dir().join(relative);
    assert!(
        path.exists(),
        "{} is missing: run `cargo xtask fetch --corpus` (the test command does)",
        path.display()
    );
    path
}

/// The first `n` conversations of an export, read with Chorus's own import.
pub fn first_conversations(export: &Path, n: usize) -> Vec<chorus_shared::Conversation> {
    let mut out = Vec::new();
    let file = std::fs::File::open(export).unwrap_or_else(|e| panic!("{}: {e}", export.display()));
    chorus_shared::import::read_export(file, &export.display().to_string(), &mut |c| {
        if out.len() < n {
            out.push(c)
        }
    })
    .expect("the export reads");
    out
}

/// Writes the first `n` conversations of `export` as a ShareGPT-style JSON file: the
/// realistic length mix the benchmarks and the wasm test use.
pub fn write_sharegpt_sample(export: &Path, n: usize, out: &Path) {
    use chorus_shared::Role;
    let records: Vec<serde_json::Value> = first_conversations(export, n)
        .iter()
        .map(|c| {
            let turns: Vec<serde_json::Value> = c
                .turns
                .iter()
                .map(|t| {
                    let from = if t.role == Role::User { "human" } else { "gpt" };
                    serde_json::json!({ "from": from, "value": t.text })
                })
                .collect();
            serde_json::json!({ "id": c.id, "conversations": turns })
        })
        .collect();
    std::fs::write(out, serde_json::to_vec(&records).unwrap()).unwrap();
}

/// Writes a ChatGPT data export's `conversations.json` holding `n` conversations: those of the
/// public export `corpus` (repeated under new ids when `n` is larger) in ChatGPT's `mapping`
/// format, with a hidden system node and the per-message metadata a real export carries — a
/// year-sized archive for the browser benchmark. Written one conversation at a time; returns the
/// file's size in bytes.
pub fn write_chatgpt_export(corpus: &Path, n: usize, out: &Path) -> u64 {
    use serde_json::json;
    use std::io::Write;
    let conversations = first_conversations(corpus, usize::MAX);
    assert!(!conversations.is_empty(), "{} holds no conversations", corpus.display());
    let mut file = std::io::BufWriter::new(std::fs::File::create(out).unwrap());
    file.write_all(b"[").unwrap();
    for i in 0..n {
        let c = &conversations[i % conversations.len()];
        let created = 1_700_000_000.0 + i as f64 * 1_500.0;
        let node = |id: &str, parent: Option<&str>, child: Option<String>, message: serde_json::Value| json!({"id": id, "message": message, "parent": parent, "children": child.into_iter().collect::<Vec<_>>()});
        let mut mapping = serde_json::Map::new();
        mapping.insert(
            "root".into(),
            node("root", None, Some("system".into()), serde_json::Value::Null),
        );
        let ids: Vec<String> = (0..c.turns.len())
            .map(|t| format!("{i:08x}-{t:04x}-4a1b-9c2d-{i:012x}"))
            .collect();
        let system = json!({"id": "system", "author": {"role": "system", "name": null, "metadata": {}},
            "create_time": null, "update_time": null, "content": {"content_type": "text", "parts": [""]},
            "status": "finished_successfully", "end_turn": true, "weight": 0.0,
            "metadata": {"is_visually_hidden_from_conversation": true}, "recipient": "all", "channel": null});
        mapping.insert(
            "system".into(),
            node("system", Some("root"), ids.first().cloned(), system),
        );
        for (t, turn) in c.turns.iter().enumerate() {
            let role = if turn.role == chorus_shared::Role::User {
                "user"
            } else {
                "assistant"
            };
            let parent = if t == 0 {
                "system".to_owned()
            } else {
                ids[t - 1].clone()
            };
            let message = json!({"id": ids[t], "author": {"role": role, "name": null, "metadata": {}},
                "create_time": created + t as f64 * 20.0, "update_time": null,
                "content": {"content_type": "text", "parts": [turn.text]},
                "status": "finished_successfully", "end_turn": role == "assistant", "weight": 1.0,
                "metadata": {"citations": [], "content_references": [], "model_slug": "gpt-4o",
                             "default_model_slug": "auto", "parent_id": parent, "request_id": format!("8e{i:014x}-IAD"),
                             "message_type": null, "finish_details": {"type": "stop", "stop_tokens": [200002]},
                             "is_complete": true, "timestamp_": "absolute"},
                "recipient": "all", "channel": null});
            mapping.insert(
                ids[t].clone(),
                node(&ids[t], Some(&parent), ids.get(t + 1).cloned(), message),
            );
        }
        // ChatGPT titles are a few words; these are the request's first words.
        let title: Vec<&str> = c
            .first_user_text()
            .unwrap_or_default()
            .split_whitespace()
            .take(6)
            .collect();
        let conversation = json!({"title": title.join(" "), "create_time": created,
            "update_time": created + 600.0, "mapping": mapping,
            "moderation_results": [], "current_node": ids.last().cloned().unwrap_or_else(|| "system".into()),
            "plugin_ids": null, "conversation_id": format!("67{i:06x}-0000-8000-a000-{i:012x}"),
            "conversation_template_id": null, "gizmo_id": null, "is_archived": false, "safe_urls": [],
            "default_model_slug": "auto", "id": format!("67{i:06x}-0000-8000-a000-{i:012x}")});
        if i > 0 {
            file.write_all(b",").unwrap();
        }
        serde_json::to_writer(&mut file, &conversation).unwrap();
    }
    file.write_all(b"]").unwrap();
    file.flush().unwrap();
    std::fs::metadata(out).unwrap().len()
}

/// The default study as shipped, parsed with its labelled examples and codebook (not compiled).
pub fn default_study() -> chorus_shared::study::Study {
    let dir = workspace_root().join("studies/default");
    let read = |f: &str| std::fs::read_to_string(dir.join(f)).unwrap();
    let (examples, codebook) = (read("examples.jsonl"), read("codebook.json"));
    let contents = chorus_shared::study::StudyContents {
        labelled_examples: Some(&examples),
        codebook: Some(&codebook),
    };
    chorus_shared::study::Study::parse(&read("study.toml"), contents).expect("the default study parses")
}

/// A study compiled by the `chorus` binary (which caches it), loaded for use in a test.
pub fn compile_study(study_toml: Option<&Path>) -> chorus_shared::study::CompiledStudy {
    // Tests of one binary run in parallel threads: each call gets a file of its own.
    static CALLS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let call = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let out = std::env::temp_dir().join(format!(
        "chorus-compiled-{}-{call}-{:x}.json",
        std::process::id(),
        fnv(study_toml)
    ));
    let mut command = std::process::Command::new(chorus_bin());
    command.args(["study", "compile", "--out"]).arg(&out);
    if let Some(path) = study_toml {
        command.arg("--study").arg(path);
    }
    let status = command.status().expect("chorus runs");
    assert!(status.success(), "chorus study compile failed");
    let compiled = serde_json::from_slice(&std::fs::read(&out).unwrap()).expect("a compiled study");
    std::fs::remove_file(&out).ok();
    compiled
}

fn fnv(path: Option<&Path>) -> u64 {
    let name = path.map(|p| p.display().to_string()).unwrap_or_default();
    chorus_shared::stable_hash::fnv1a(name.as_bytes())
}

/// The embedder over the cached pinned model.
pub fn embedder() -> chorus_shared::embed::Embedder {
    use chorus_shared::embed::pins::pins;
    let model = std::fs::read(cached(&format!("model/{}", pins().model.file))).unwrap();
    let tokenizer = std::fs::read(cached(&format!("model/{}", pins().tokenizer.file))).unwrap();
    chorus_shared::embed::Embedder::new(&model, &tokenizer).unwrap()
}

/// Fails if `sent` contains any 20 consecutive characters of any title or turn of `export`.
pub fn assert_no_text_of(export: &Path, sent: &str) {
    let mut checked = 0usize;
    for conversation in first_conversations(export, usize::MAX) {
        let texts = conversation
            .turns
            .iter()
            .map(|t| t.text.as_str())
            .chain(conversation.title.as_deref());
        for text in texts {
            let chars: Vec<char> = text.chars().collect();
            for window in chars.windows(20) {
                let needle: String = window.iter().collect();
                assert!(
                    !sent.contains(&needle),
                    "the payload contains conversation text: {needle:?}"
                );
                checked += 1;
            }
        }
    }
    assert!(checked > 100, "too little text to check ({checked} windows)");
}

/// A `chorus serve` process on a free loopback port, killed when dropped.
pub struct ServerProcess {
    pub child: std::process::Child,
    pub url: String,
    pub data_dir: PathBuf,
    pub log: PathBuf,
}

/// The admin token the test servers run with.
pub const ADMIN_TOKEN: &str = "test-admin-token";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

impl ServerProcess {
    /// Starts a server on `data_dir` (SQLite there unless `database` names PostgreSQL), with
    /// `extra` arguments, and waits until `/healthz` answers.
    pub fn start(data_dir: &Path, database: Option<&str>, extra: &[&str]) -> ServerProcess {
        let port = free_port();
        std::fs::create_dir_all(data_dir).unwrap();
        let log = data_dir.join(format!("server-{port}.log"));
        let mut command = std::process::Command::new(chorus_bin());
        command
            .args(["serve", "--bind", &format!("127.0.0.1:{port}"), "--data-dir"])
            .arg(data_dir)
            .args(extra)
            .env("CHORUS_ADMIN_TOKEN", ADMIN_TOKEN)
            .env_remove("CHORUS_DATABASE")
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap());
        if let Some(url) = database {
            command.args(["--database", url]);
        }
        let child = command.spawn().expect("chorus serve starts");
        let mut server = ServerProcess {
            child,
            url: format!("http://127.0.0.1:{port}"),
            data_dir: data_dir.to_path_buf(),
            log,
        };
        server.wait_healthy();
        server
    }

    fn wait_healthy(&mut self) {
        // Compiling the study on a cold cache takes a minute or two.
        for _ in 0..600 {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!(
                    "chorus serve exited with {status}: {}",
                    std::fs::read_to_string(&self.log).unwrap_or_default()
                );
            }
            if http(&self.url, "GET", "/healthz", None).0 == 200 {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(500));
        }
        panic!("chorus serve did not become healthy");
    }

    /// SIGKILL: no chance to flush or finish anything.
    pub fn kill(&mut self) {
        self.child.kill().ok();
        self.child.wait().ok();
    }

    pub fn get(&self, path: &str) -> (u16, String) {
        http(&self.url, "GET", path, None)
    }

    pub fn post(&self, path: &str, body: &str) -> (u16, String) {
        http(&self.url, "POST", path, Some(body))
    }

    /// A GET with the admin token (`/metrics`).
    pub fn admin_get(&self, path: &str) -> (u16, String) {
        http(&self.url, "ADMIN GET", path, None)
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// One HTTP request; (0, error) when no answer came.
pub fn http(base: &str, method: &str, path: &str, body: Option<&str>) -> (u16, String) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(std::time::Duration::from_secs(60)))
        .build()
        .into();
    let url = format!("{base}{path}");
    let result = match (method, body) {
        ("GET", _) => agent.get(&url).call(),
        ("ADMIN GET", _) => agent
            .get(&url)
            .header("Authorization", &format!("Bearer {ADMIN_TOKEN}"))
            .call(),
        (_, Some(body)) => agent
            .post(&url)
            .header("Content-Type", "application/json")
            .header("Authorization", &format!("Bearer {ADMIN_TOKEN}"))
            .send(body),
        (_, None) => agent
            .post(&url)
            .header("Authorization", &format!("Bearer {ADMIN_TOKEN}"))
            .send_empty(),
    };
    match result {
        Ok(mut response) => {
            let status = response.status().as_u16();
            let text = response
                .body_mut()
                .with_config()
                .limit(64 << 20)
                .read_to_string()
                .unwrap_or_default();
            (status, text)
        }
        Err(e) => (0, e.to_string()),
    }
}

/// The PostgreSQL server the test command provides (`CHORUS_TEST_POSTGRES`), with a fresh
/// database for one test. Fails loudly when there is none: these tests never skip.
pub fn fresh_postgres_database(name: &str) -> String {
    let base = std::env::var("CHORUS_TEST_POSTGRES").expect(
        "CHORUS_TEST_POSTGRES is not set: run the tests with `cargo xtask test`, which starts a local PostgreSQL",
    );
    let mut client = postgres::Client::connect(&base, postgres::NoTls)
        .unwrap_or_else(|e| panic!("cannot reach PostgreSQL at {base}: {e}"));
    let database = format!("chorus_{name}_{}", std::process::id());
    client
        .batch_execute(&format!("DROP DATABASE IF EXISTS {database}"))
        .unwrap();
    client.batch_execute(&format!("CREATE DATABASE {database}")).unwrap();
    let (prefix, _) = base.rsplit_once('/').expect("a URL ending in /database");
    format!("{prefix}/{database}")
}

/// The on-device analyses (with embeddings and category probabilities) of an export, by the
/// `chorus analyze` command, for the default study.
pub fn analyses_of(export: &Path) -> Vec<chorus_shared::Analysis> {
    analyses_for_study(export, None)
}

/// The on-device analyses of an export for a study file (the default study when none).
pub fn analyses_for_study(export: &Path, study: Option<&Path>) -> Vec<chorus_shared::Analysis> {
    let mut command = std::process::Command::new(chorus_bin());
    command.args(["analyze", "--embeddings"]);
    if let Some(study) = study {
        command.arg("--study").arg(study);
    }
    let out = command.arg(export).output().expect("chorus analyze runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).expect("an analysis"))
        .collect()
}

/// A batch of one report from contributor `n` (its key derived from `n` too), with no tokens:
/// what a benchmark or a scripted attacker posts without privatizing anew.
pub fn one_report_batch(
    study: &chorus_shared::study::CompiledStudy,
    report: chorus_messages::Report,
    n: usize,
) -> chorus_messages::ReportBatch {
    chorus_messages::ReportBatch {
        protocol: chorus_messages::PROTOCOL_VERSION,
        study_id: study.id.clone(),
        study_version: study.version.clone(),
        contributor: format!("{n:032x}"),
        idempotency_key: format!("{n:032x}"),
        reports: vec![report],
        tokens: Vec::new(),
    }
}

/// A batch of one report, privatized from `analysis` with OpenDP's secure noise, from a new
/// random contributor — what one browser would send.
pub fn batch_for(
    study: &chorus_shared::study::CompiledStudy,
    analysis: &chorus_shared::Analysis,
) -> chorus_messages::ReportBatch {
    use chorus_shared::device::{random_id, seal};
    use chorus_shared::privacy::noise::Noise;
    let mut noise = Noise::Secure;
    let report = study
        .privacy
        .privatize(analysis, &study.category_ids(), &mut noise)
        .unwrap();
    let (contributor, key) = (random_id(&mut noise).unwrap(), random_id(&mut noise).unwrap());
    seal(&study.id, &study.version, &contributor, &key, vec![report], &noise).unwrap()
}

/// `n` made-up analyses for `study` (drawn from `seed`): every language of three, category,
/// concern level, codebook leaf, turn count and code flag represented, random embeddings and
/// category probabilities. For releases whose input need not be realistic, only well formed.
pub fn synthetic_analyses(
    study: &chorus_shared::study::CompiledStudy,
    n: usize,
    seed: u64,
) -> Vec<chorus_shared::Analysis> {
    use chorus_shared::codebook::kmeans::SplitMix;
    let codebook = study.codebook.as_ref().expect("a study with a codebook");
    let paths = codebook.paths();
    let mut rng = SplitMix(seed);
    (0..n)
        .map(|i| {
            let path = &paths[rng.below(paths.len())];
            let mut probabilities: Vec<f32> = (0..study.categories.len()).map(|_| rng.unit() as f32).collect();
            let sum: f32 = probabilities.iter().sum();
            probabilities.iter_mut().for_each(|p| *p /= sum);
            chorus_shared::Analysis {
                id: format!("c{i}"),
                language: ["en", "fr", "zh"][i % 3].into(),
                category: study.categories[i % study.categories.len()].id.clone(),
                concern: 1 + (i % 5) as u8,
                topic_path: Some(
                    path.iter()
                        .enumerate()
                        .map(|(l, &t)| codebook.levels[l][t].id.clone())
                        .collect(),
                ),
                turns: 1 + (i % 7) as u32,
                chars: 100,
                has_code: i % 2 == 0,
                embedding: Some((0..384).map(|_| rng.unit() as f32 - 0.5).collect()),
                category_probabilities: Some(probabilities),
            }
        })
        .collect()
}

/// `chorus serve` with the pages, its store seeded with `contributors` demo contributors (the
/// first public conversations), once its first demo release is cut.
pub fn demo_server_with_release(dir: &Path, contributors: usize) -> ServerProcess {
    let corpus = dir.join("public.json");
    write_sharegpt_sample(&cached("corpus/sharegpt.json"), contributors, &corpus);
    let www = workspace_root().join("www");
    let count = contributors.to_string();
    let server = ServerProcess::start(
        &dir.join("data"),
        None,
        &[
            "--www",
            www.to_str().unwrap(),
            "--demo-corpus",
            corpus.to_str().unwrap(),
            "--demo-contributors",
            &count,
        ],
    );
    let started = std::time::Instant::now();
    while server.get("/api/v1/releases").1 == "[]" {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(600),
            "no demo release"
        );
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
    server
}
