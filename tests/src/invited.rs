//! A study that admits invited contributors only, and invitations to it, for the tests of
//! tokens on the server, in `chorus contribute` and on the contributor's page.

use crate::{chorus_bin, fixture};
use std::path::{Path, PathBuf};

/// The test study of the browser tests, admitting invited contributors only, its category
/// reported by OLH (whose hash seeds the tokens fix).
pub fn invited_study(dir: &Path) -> PathBuf {
    let text = std::fs::read_to_string(fixture("every-conversation-study.toml")).unwrap();
    let invited = text
        .replace("access = \"open\"\n", "")
        .replace("id = \"every-conversation\"", "id = \"invited\"")
        .replace(
            "category = { epsilon = 0.5 }",
            "category = { epsilon = 0.5, oracle = \"olh\" }",
        );
    assert!(invited.contains("oracle = \"olh\""), "the fixture study changed");
    let path = dir.join("invited-study.toml");
    std::fs::write(&path, invited).unwrap();
    path
}

/// `chorus invite`: the printed codes (or links to the contributor's page at `base_url`).
pub fn invite(
    data: &Path,
    database: Option<&str>,
    study_file: &Path,
    count: usize,
    base_url: Option<&str>,
) -> Vec<String> {
    let mut command = std::process::Command::new(chorus_bin());
    command
        .args([
            "invite",
            "--study",
            "invited",
            "--count",
            &count.to_string(),
            "--data-dir",
        ])
        .arg(data)
        .arg("--study-file")
        .arg(study_file)
        .env_remove("CHORUS_DATABASE");
    if let Some(url) = database {
        command.args(["--database", url]);
    }
    if let Some(base) = base_url {
        command.args(["--base-url", base]);
    }
    let out = command.output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}
