//! The composite tasks: build the wasm bundle, test everything, run the product.

use crate::fetch;
use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_path_buf()
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target"))
}

/// Runs a command in the workspace root, failing with its command line when it fails.
fn sh(program: &str, args: &[&str]) -> Result<(), String> {
    sh_env(program, args, &[])
}

fn sh_env(program: &str, args: &[&str], env: &[(&str, &str)]) -> Result<(), String> {
    eprintln!("xtask: {program} {}", args.join(" "));
    let status = Command::new(program)
        .args(args)
        .envs(env.iter().copied())
        .current_dir(root())
        .status()
        .map_err(|e| format!("cannot run {program}: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("`{program} {}` failed ({status})", args.join(" ")))
    }
}

fn output(program: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(program).args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The wasm-bindgen version in Cargo.lock: the CLI must match it exactly.
fn locked_wasm_bindgen_version() -> Result<String, String> {
    let lock =
        std::fs::read_to_string(root().join("Cargo.lock")).map_err(|e| format!("cannot read Cargo.lock: {e}"))?;
    let mut lines = lock.lines();
    while let Some(line) = lines.next() {
        if line == "name = \"wasm-bindgen\"" {
            if let Some(version) = lines.next().and_then(|l| l.strip_prefix("version = \"")) {
                return Ok(version.trim_end_matches('"').to_owned());
            }
        }
    }
    Err("wasm-bindgen is not in Cargo.lock".into())
}

/// Builds the browser bundle into `www/pkg`, twice from the same code: with relaxed SIMD
/// (fused multiply-add in the matrix kernels; about 16% faster in Chromium) as
/// `chorus_client_bg.wasm`, and with plain simd128 as `chorus_client_simd128_bg.wasm` for
/// browsers without relaxed SIMD. The worker picks one; both share `chorus_client.js`.
pub fn wasm() -> Result<(), String> {
    let installed = output("rustup", &["target", "list", "--installed"]).unwrap_or_default();
    if !installed.lines().any(|t| t.trim() == "wasm32-unknown-unknown") {
        sh("rustup", &["target", "add", "wasm32-unknown-unknown"])?;
    }
    let version = locked_wasm_bindgen_version()?;
    let have = output("wasm-bindgen", &["--version"]).unwrap_or_default();
    if have.split_whitespace().nth(1) != Some(version.as_str()) {
        // `--locked` builds the dependencies the release was tested with; a registry mirror
        // that lacks one of those exact versions gets the newest compatible ones instead.
        let install = |locked: &[&str]| {
            let args = [&["install", "wasm-bindgen-cli", "--version", &version], locked].concat();
            sh("cargo", &args)
        };
        if install(&["--locked"]).is_err() {
            eprintln!("xtask: installing wasm-bindgen-cli {version} without --locked");
            install(&[])?;
        }
    }
    // The config's wasm rustflags (simd128) are joined with these; a target directory of its
    // own keeps the two builds from rebuilding each other.
    let relaxed = build_client(
        &target_dir().join("relaxed-simd"),
        &[
            "--config",
            r#"target.wasm32-unknown-unknown.rustflags=["-C", "target-feature=+relaxed-simd"]"#,
        ],
    )?;
    let plain = build_client(&target_dir(), &[])?;
    let out_dir = root().join("www/pkg");
    bindgen(&relaxed, &out_dir)?;
    let plain_dir = target_dir().join("wasm-bindgen-simd128");
    bindgen(&plain, &plain_dir)?;
    let glue = |dir: &Path| std::fs::read(dir.join("chorus_client.js")).unwrap_or_default();
    if glue(&plain_dir) != glue(&out_dir) {
        return Err(
            "the simd128 and relaxed-SIMD builds have different JavaScript glue; they must export the same API".into(),
        );
    }
    std::fs::copy(
        plain_dir.join("chorus_client_bg.wasm"),
        out_dir.join("chorus_client_simd128_bg.wasm"),
    )
    .map_err(|e| format!("cannot copy the simd128 bundle into {}: {e}", out_dir.display()))?;
    Ok(())
}

/// `cargo build` of the client for wasm into `target`; the path of the built module.
fn build_client(target: &Path, extra: &[&str]) -> Result<PathBuf, String> {
    let target_arg = target.to_string_lossy();
    let mut args = vec![
        "build",
        "--release",
        "--package",
        "chorus-client",
        "--target",
        "wasm32-unknown-unknown",
        "--target-dir",
        &target_arg,
    ];
    args.extend_from_slice(extra);
    sh("cargo", &args)?;
    Ok(target.join("wasm32-unknown-unknown/release/chorus_client.wasm"))
}

fn bindgen(wasm: &Path, out_dir: &Path) -> Result<(), String> {
    sh(
        "wasm-bindgen",
        &[
            "--target",
            "web",
            "--no-typescript",
            "--out-dir",
            &out_dir.to_string_lossy(),
            &wasm.to_string_lossy(),
        ],
    )
}

/// A tool the build needs and how to get it on Debian.
struct Prerequisite {
    program: &'static str,
    why: &'static str,
    install: &'static str,
}

const BUILD_TOOLS: [Prerequisite; 4] = [
    Prerequisite {
        program: "rustup",
        why: "it installs the toolchain in rust-toolchain.toml and the wasm target",
        install: "see https://rustup.rs",
    },
    Prerequisite {
        program: "cc",
        why: "SQLite and OpenSSL are compiled from source",
        install: "apt-get install build-essential",
    },
    Prerequisite {
        program: "make",
        why: "OpenSSL's build runs it",
        install: "apt-get install build-essential",
    },
    Prerequisite {
        program: "perl",
        why: "OpenSSL's build configures itself with it",
        install: "apt-get install perl",
    },
];

const NODE_TOOLS: [Prerequisite; 2] = [
    Prerequisite {
        program: "node",
        why: "the browser tests and the pages' formatter and linter run on Node (18 or later)",
        install: "apt-get install nodejs npm",
    },
    Prerequisite {
        program: "npm",
        why: "it installs the browser tests' pinned packages",
        install: "apt-get install nodejs npm",
    },
];

/// Fails with what to install when a tool the task needs is missing.
fn require(tools: &[Prerequisite]) -> Result<(), String> {
    let missing: Vec<String> = tools
        .iter()
        .filter(|t| Command::new(t.program).arg("--version").output().is_err())
        .map(|t| format!("  {} — {}; install it: {}", t.program, t.why, t.install))
        .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(format!("missing prerequisites:\n{}", missing.join("\n")))
    }
}

/// Everything CI checks. Installs what it needs; safe to run again.
pub fn test() -> Result<(), String> {
    require(&BUILD_TOOLS)?;
    require(&NODE_TOOLS)?;
    fetch::fetch(true)?;
    wasm()?;
    sh("cargo", &["fmt", "--all", "--", "--check"])?;
    npm_packages_ready()?;
    lint_pages()?;
    sh("cargo", &["build", "--release", "--workspace"])?;
    sh(
        "cargo",
        &[
            "clippy",
            "--release",
            "--workspace",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ],
    )?;
    // Compiled (and cached) once before the tests: tests that start servers side by side would
    // otherwise each compile it on a cold cache, at once, and outlast their wait for the server.
    sh(
        "cargo",
        &[
            "run",
            "--release",
            "--quiet",
            "--package",
            "chorus-cli",
            "--",
            "study",
            "compile",
            "--out",
            "/dev/null",
        ],
    )?;
    let postgres = crate::postgres::ensure()?;
    let chromium = browser_tests_ready()?;
    sh_env(
        "cargo",
        &["test", "--release", "--workspace"],
        &[("CHORUS_TEST_POSTGRES", &postgres), ("CHROMIUM", &chromium)],
    )
}

/// Debian's Chromium, installed when missing and running as root. Returns its binary.
fn browser_tests_ready() -> Result<String, String> {
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    if !std::path::Path::new(&chromium).exists() {
        if !is_root() {
            return Err(format!(
                "{chromium} is missing: install Debian's `chromium` package, or set CHROMIUM"
            ));
        }
        eprintln!("xtask: installing Chromium");
        apt_install(&["chromium"])?;
    }
    Ok(chromium)
}

/// The pinned npm packages of `tests/browser` (`npm ci --ignore-scripts`): puppeteer-core,
/// which drives Debian's Chromium and downloads nothing, and Biome, the pages' formatter and
/// linter.
fn npm_packages_ready() -> Result<(), String> {
    let dir = root().join("tests/browser");
    let installed = ["puppeteer-core", "@biomejs/biome"]
        .iter()
        .all(|p| dir.join("node_modules").join(p).join("package.json").exists());
    if !installed {
        let status = Command::new("npm")
            .args(["ci", "--ignore-scripts", "--no-audit", "--no-fund"])
            .current_dir(&dir)
            .status()
            .map_err(|e| format!("npm: {e} (Node and npm are needed for the tests)"))?;
        if !status.success() {
            return Err("npm ci in tests/browser failed".into());
        }
    }
    Ok(())
}

/// The pages and the browser tests formatted and linted by Biome (`biome.json`); `biome check
/// --write .` fixes what it can.
fn lint_pages() -> Result<(), String> {
    let biome = root().join("tests/browser/node_modules/.bin/biome");
    sh(&biome.to_string_lossy(), &["ci", "--colors=off", "."])
}

pub fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// `apt-get install -y` (after `apt-get update` when the first attempt fails).
pub fn apt_install(packages: &[&str]) -> Result<(), String> {
    let apt = |args: &[&str]| {
        Command::new("apt-get")
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
            .is_ok_and(|s| s.success())
    };
    let install: Vec<&str> = ["install", "-y"].iter().chain(packages).copied().collect();
    if apt(&install) || (apt(&["update"]) && apt(&install)) {
        Ok(())
    } else {
        Err(format!("apt-get install {} failed", packages.join(" ")))
    }
}

/// Runs the product: the aggregation server with its embedded SQLite store, serving the API and
/// the pages in `www/` on http://127.0.0.1:8080 (extra arguments go to `chorus serve`).
pub fn run(args: &[String]) -> Result<(), String> {
    require(&BUILD_TOOLS)?;
    // The corpus seeds a first run's store with demo contributions (public conversations); the
    // default data directory once marked as demo data does not need it. A store the caller
    // chooses may be empty, so it gets the corpus (the server seeds only an empty store).
    let chosen_store = args
        .iter()
        .any(|a| a.starts_with("--data-dir") || a.starts_with("--database"));
    let seeded = !chosen_store && default_data_dir().join("DEMO").exists();
    fetch::fetch(!seeded)?;
    wasm()?;
    // The same command as `test`: the same features, so neither rebuilds what the other built.
    sh("cargo", &["build", "--release", "--workspace"])?;
    let chorus = target_dir().join("release/chorus");
    let www = root().join("www");
    let mut command_line = vec![
        "serve".to_owned(),
        "--www".to_owned(),
        www.to_string_lossy().into_owned(),
    ];
    if !seeded {
        let corpus = fetch::cache_dir().join("corpus").join("sharegpt.json");
        command_line.extend(["--demo-corpus".to_owned(), corpus.to_string_lossy().into_owned()]);
    }
    command_line.extend(args.iter().cloned());
    let refs: Vec<&str> = command_line.iter().map(String::as_str).collect();
    sh(&chorus.to_string_lossy(), &refs)
}

/// `chorus serve`'s default data directory: `$CHORUS_DATA_DIR`, else `$XDG_DATA_HOME/chorus`,
/// else `~/.local/share/chorus`. A copy of `chorus_server::config::default_data_dir`, because
/// xtask depends on no workspace crate (it must build, and fetch, before anything else builds).
fn default_data_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("CHORUS_DATA_DIR") {
        return dir.into();
    }
    std::env::var_os("XDG_DATA_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")))
        .unwrap_or_else(|| PathBuf::from("."))
        .join("chorus")
}
