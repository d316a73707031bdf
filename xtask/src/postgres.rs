//! A local PostgreSQL for the test suite: installed from the distribution's packages when
//! absent, one cluster under /var/tmp started on a fixed loopback port, reused by later runs.
//! The tests get its URL in `CHORUS_TEST_POSTGRES` (a URL given there already is used as is).

use std::path::{Path, PathBuf};
use std::process::Command;

const PORT: u16 = 55432;

fn cluster_dir() -> PathBuf {
    PathBuf::from("/var/tmp/chorus-test-postgres")
}

/// The directory of `initdb` and `pg_ctl`: Debian keeps them out of PATH.
fn bin_dir() -> Option<PathBuf> {
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|p| p.join("pg_ctl").exists())
        .collect();
    versions.sort();
    versions.pop()
}

fn run(program: &Path, args: &[&str], as_postgres: bool) -> Result<bool, String> {
    let mut command = if as_postgres {
        // PostgreSQL refuses to run as root; the package's `postgres` user runs it.
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    };
    let status = command
        .args(args)
        .status()
        .map_err(|e| format!("cannot run {}: {e}", program.display()))?;
    Ok(status.success())
}

pub fn ensure() -> Result<String, String> {
    if let Ok(url) = std::env::var("CHORUS_TEST_POSTGRES") {
        return Ok(url);
    }
    let root = crate::tasks::is_root();
    let bin = match bin_dir() {
        Some(bin) => bin,
        None if root => {
            crate::tasks::apt_install(&["postgresql"])?;
            bin_dir().ok_or("PostgreSQL was installed but pg_ctl is not in /usr/lib/postgresql/*/bin")?
        }
        None => return Err("PostgreSQL is not installed: install the `postgresql` package, or set CHORUS_TEST_POSTGRES to a server the tests may create databases on".into()),
    };
    let dir = cluster_dir();
    let dir_s = dir.to_string_lossy().into_owned();
    if !dir.join("PG_VERSION").exists() {
        std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {dir_s}: {e}"))?;
        if root {
            Command::new("chown")
                .args(["-R", "postgres:postgres", &dir_s])
                .status()
                .map_err(|e| format!("chown: {e}"))?;
        }
        eprintln!("xtask: creating a PostgreSQL cluster in {dir_s}");
        if !run(
            &bin.join("initdb"),
            &["-D", &dir_s, "-A", "trust", "-U", "chorus", "--no-sync"],
            root,
        )? {
            return Err(format!("initdb failed in {dir_s}"));
        }
    }
    if !run(&bin.join("pg_ctl"), &["status", "-D", &dir_s], root)? {
        let options = format!("-p {PORT} -k {dir_s} -c listen_addresses=127.0.0.1");
        let log = format!("{dir_s}/server.log");
        if !run(
            &bin.join("pg_ctl"),
            &["start", "-w", "-D", &dir_s, "-l", &log, "-o", &options],
            root,
        )? {
            return Err(format!("PostgreSQL did not start; see {log}"));
        }
    }
    Ok(format!("postgres://chorus@127.0.0.1:{PORT}/postgres"))
}
