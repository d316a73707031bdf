//! The pages in Debian's headless Chromium (driven by `tests/browser/*.mjs` with
//! puppeteer-core): the contributor's donation flow against a study that takes seven reports per
//! contributor; 300 devices donating one conversation each through the page with the shipped
//! default study, their reports held by the server against the devices' own facets; and the
//! auditor's page on a demo-seeded release. Screenshots are saved to
//! `target/browser-screenshots/`; the committed ones in `tests/browser/screenshots/`, of every
//! stage at both widths, come from `--example page_stages`.

use chorus_messages::Report;
use chorus_messages::{Channel, Privatized};
use chorus_shared::study::CompiledStudy;
use chorus_shared::Analysis;
use chorus_tests::invited::{invite, invited_study};
use chorus_tests::{
    analyses_of, assert_no_text_of, cached, demo_server_with_release, first_conversations, fixture, http,
    workspace_root, write_sharegpt_sample, ServerProcess,
};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

fn browser_dir() -> PathBuf {
    workspace_root().join("tests/browser")
}

fn screenshots() -> PathBuf {
    let dir = workspace_root().join("target/browser-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Runs one of the browser scripts; its last line of output is JSON.
fn node(script: &str, args: &[&str]) -> Value {
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        Path::new(&chromium).exists(),
        "{chromium} is missing: `cargo xtask test` installs Debian's chromium"
    );
    assert!(
        browser_dir().join("node_modules/puppeteer-core").exists(),
        "tests/browser/node_modules is missing: `cargo xtask test` runs npm ci there"
    );
    let out = std::process::Command::new("node")
        .arg(script)
        .args(args)
        .current_dir(browser_dir())
        .env("CHROMIUM", &chromium)
        .output()
        .expect("node runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{script} failed: {stderr}");
    let stdout = String::from_utf8(out.stdout).unwrap();
    serde_json::from_str(stdout.lines().last().unwrap_or_default()).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

fn temp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("chorus-browser-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn reports_stored(server: &ServerProcess) -> f64 {
    let metrics = server.admin_get("/metrics").1;
    metrics
        .lines()
        .filter(|l| l.starts_with("chorus_reports_stored_total"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Every request went to the server itself, and none carries text of the export.
fn check_requests(out: &Value, base: &str, export: &Path) {
    let requests = out["requests"].as_array().unwrap();
    assert!(!requests.is_empty());
    let mut sent = String::new();
    for r in requests {
        let url = r["url"].as_str().unwrap();
        assert!(
            url.starts_with(base) || url.starts_with("data:"),
            "a request off the server: {url}"
        );
        sent.push_str(url);
        sent.push('\n');
        sent.push_str(r["body"].as_str().unwrap());
        sent.push('\n');
    }
    assert_no_text_of(export, &sent);
}

/// `path` comes gzip-compressed to a client that accepts it, smaller, and decompresses to
/// `plain`.
fn assert_compressed(server: &ServerProcess, path: &str, plain: &[u8]) {
    let mut response = ureq::get(&format!("{}{path}", server.url))
        .header("Accept-Encoding", "gzip")
        .call()
        .unwrap();
    let encoding = response
        .headers()
        .get("content-encoding")
        .map(|v| v.to_str().unwrap().to_owned());
    assert_eq!(encoding.as_deref(), Some("gzip"), "{path}");
    let sent = response.body_mut().with_config().limit(1 << 30).read_to_vec().unwrap();
    assert!(
        sent.len() < plain.len(),
        "{path}: {} bytes for {}",
        sent.len(),
        plain.len()
    );
    let mut unpacked = Vec::new();
    std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&sent[..]), &mut unpacked).unwrap();
    assert!(unpacked == plain, "{path} decompresses to other bytes");
}

#[test]
fn a_contributor_donates_from_the_page() {
    let export = fixture("chatgpt-export.zip");
    let conversations = first_conversations(&export, usize::MAX).len();
    let dir = temp("contribute");
    let wrong = dir.join("holiday.png");
    std::fs::write(&wrong, b"\x89PNG\r\n\x1a\n not an export at all").unwrap();
    let www = workspace_root().join("www");
    let study = fixture("every-conversation-study.toml");
    let server = ServerProcess::start(
        &dir.join("data"),
        None,
        &["--www", www.to_str().unwrap(), "--study-file", study.to_str().unwrap()],
    );
    // The compiled study, compressed as a browser asks for it, is byte for byte what it was.
    let study_json = http(&server.url, "GET", "/api/v1/studies/every-conversation", None).1;
    assert_compressed(&server, "/api/v1/studies/every-conversation", study_json.as_bytes());
    let shots = screenshots();
    let out = node(
        "contribute.mjs",
        &[
            &server.url,
            "every-conversation",
            export.to_str().unwrap(),
            wrong.to_str().unwrap(),
            shots.to_str().unwrap(),
        ],
    );
    let error = out["wrong_file_error"].as_str().unwrap();
    assert!(error.contains("could not be read as an export"), "{error}");
    assert_eq!(out["rows"], conversations as u64, "{out}");
    // Sorted newest first; filtered to one category (its option counts its rows), leaving out
    // exactly those; everything included again afterwards.
    let days: Vec<&str> = out["days_newest_first"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_str().unwrap())
        .collect();
    assert!(
        days.iter().all(|d| d.len() == 10),
        "every fixture row has its day: {days:?}"
    );
    assert!(days.windows(2).all(|w| w[0] >= w[1]), "not newest first: {days:?}");
    let filtered = out["filtered"].as_array().unwrap();
    assert!(
        !filtered.is_empty() && filtered.iter().all(|c| c == &filtered[0]),
        "{out}"
    );
    let option = out["filter_option"].as_str().unwrap();
    assert!(option.ends_with(&format!("({})", filtered.len())), "{option}");
    let left_out = out["filtered_left_out"].as_str().unwrap();
    assert!(
        left_out.contains(&format!("{} included", conversations - filtered.len())),
        "{left_out}"
    );
    assert!(
        out["after_filter"]
            .as_str()
            .unwrap()
            .contains(&format!("{conversations} included")),
        "{out}"
    );
    // A batch is always m = 7 reports. One row excluded: it is not among them (another
    // conversation is reported twice, each time with its own noise); the second device
    // excluded nothing: each conversation once.
    let m = 7;
    assert_eq!(conversations, m);
    assert_eq!(out["payload"]["reports"].as_array().unwrap().len(), m);
    let sampled = out["sampled"].as_array().unwrap();
    assert!(
        !sampled.contains(&out["excluded"]),
        "an excluded conversation was sampled: {out}"
    );
    assert_eq!(out["second_payload"]["reports"].as_array().unwrap().len(), m);
    assert_eq!(
        out["accessibility"],
        serde_json::json!([]),
        "axe-core: serious violations"
    );
    // Declining sends nothing and leaves no button live; the batch shown again is the same one.
    let declined = &out["declined"];
    assert!(
        declined["text"].as_str().unwrap().contains("Nothing was sent"),
        "{declined}"
    );
    assert_eq!(declined["donate_disabled"], true);
    assert_eq!(declined["decline_disabled"], true);
    assert_eq!(declined["reports_posted"], 0);
    assert_eq!(out["payload_again"], out["payload"]);
    assert!(out["receipt"].as_str().unwrap().starts_with("Thank you"), "{out}");
    assert!(
        out["blocked"].as_u64().unwrap() >= 1,
        "the failed POST was not attempted"
    );
    assert!(
        out["second_receipt"].as_str().unwrap().starts_with("Thank you"),
        "{out}"
    );
    assert_eq!(out["outbox_after"], 0, "a donation was left in the outbox");
    // Chromium has relaxed SIMD: its workers run the faster bundle, never the fallback.
    let bundles: Vec<&str> = out["requests"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["url"].as_str().filter(|u| u.ends_with(".wasm")))
        .collect();
    assert!(
        !bundles.is_empty() && bundles.iter().all(|u| u.ends_with("/pkg/chorus_client_bg.wasm")),
        "{bundles:?}"
    );
    assert_eq!(out["narrow_overflow"], false, "the page overflows a narrow screen");
    assert_eq!(
        out["narrow_small_text"],
        serde_json::json!([]),
        "text under 12 px at 390 px"
    );
    assert!(out["model_fetches_first_visit"].as_u64().unwrap() >= 1);
    assert_eq!(
        out["model_fetches_after_return"], 0,
        "the model must come from Cache Storage"
    );
    // From the keyboard: the first row's checkbox unticked with Space, the payload with Enter:
    // the batch already donated (it left that row out), sent again for nothing.
    let count = out["keyboard_excluded"].as_str().unwrap();
    assert!(count.contains(&format!("{} included", conversations - 1)), "{count}");
    assert_eq!(out["keyboard_payload_reports"], m as u64);
    assert!(out["keyboard_cost"].as_str().unwrap().contains("sent before"), "{out}");
    // Both devices' batches, each stored once.
    assert_eq!(reports_stored(&server), (2 * m) as f64);
    // The second device withdrew its donation with the receipt's code: the store keeps the
    // first device's batch only, which is what a release would count.
    assert!(
        out["steward"].as_str().unwrap().contains("days after it arrives"),
        "{out}"
    );
    let code = out["withdrawal_code"].as_str().unwrap();
    assert!(code.len() >= 16, "{out}");
    assert!(out["withdrawn"].as_str().unwrap().starts_with("Withdrawn"), "{out}");
    assert!(
        out["withdrawn_again"].as_str().unwrap().contains("withdrawn before"),
        "{out}"
    );
    assert!(
        out["withdraw_unknown"].as_str().unwrap().starts_with("No donation"),
        "{out}"
    );
    assert!(
        out["withdraw_malformed"].as_str().unwrap().contains("32 characters"),
        "{out}"
    );
    let study: Value = serde_json::from_str(&server.get("/api/v1/studies/every-conversation").1).unwrap();
    let storage = chorus_server::storage::open(&server.data_dir.join("chorus.sqlite3").to_string_lossy()).unwrap();
    let version = study["version"].as_str().unwrap();
    assert_eq!(storage.totals("every-conversation", version).unwrap(), (1, m as u64));
    check_requests(&out, &server.url, &export);
    eprintln!(
        "contributor page: {} conversations analysed in {} ms (model load included)",
        out["rows"], out["analysis_ms"]
    );
    drop(server);
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn an_invited_contributor_donates_from_the_page_and_a_lost_redemption_is_sent_again() {
    let export = fixture("chatgpt-export.zip");
    let dir = temp("invited");
    let study_file = invited_study(&dir);
    let www = workspace_root().join("www");
    let data = dir.join("data");
    let server = ServerProcess::start(
        &data,
        None,
        &[
            "--www",
            www.to_str().unwrap(),
            "--study-file",
            study_file.to_str().unwrap(),
        ],
    );
    let links = invite(&data, None, &study_file, 1, Some(&server.url));
    let link = &links[0];
    let code = link
        .rsplit_once("#invitation=")
        .expect("a link with the code in its fragment")
        .1;
    assert!(
        link.starts_with(&format!("{}/contribute.html?study=invited#", server.url)),
        "{link}"
    );
    let out = node(
        "invited.mjs",
        &[
            &server.url,
            "invited",
            link,
            export.to_str().unwrap(),
            screenshots().to_str().unwrap(),
        ],
    );
    // Without an invitation: analysed, but nothing prepared, and the page says why.
    assert_eq!(out["uninvited_access"], "uninvited", "{out}");
    assert!(
        out["uninvited_error"]
            .as_str()
            .unwrap()
            .contains("invited contributors only"),
        "{out}"
    );
    assert_eq!(out["uninvited_payload_hidden"], true);
    // With the link: the code is out of the address bar at once.
    assert_eq!(out["invited_access"], "invited", "{out}");
    assert!(!out["address_after_link"].as_str().unwrap().contains(code), "{out}");
    // The first redemption reached the server (it spent the invitation) but its answer was
    // lost; every later attempt sent the very same request, and the server answered it.
    assert_eq!(out["forwarded_status"], 200, "{out}");
    let redemptions: Vec<&str> = out["redemptions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap())
        .collect();
    assert!(redemptions.len() >= 2, "{} redemptions", redemptions.len());
    assert!(redemptions.iter().all(|r| *r == redemptions[0]), "a redemption changed");
    let redemption: chorus_messages::InvitationRedemption = serde_json::from_str(redemptions[0]).unwrap();
    assert_eq!(redemption.invitation, code);
    // One token per report, each carried by the batch; the server stored all seven.
    let m = 7;
    assert_eq!(out["payload"]["reports"].as_array().unwrap().len(), m, "{out}");
    assert_eq!(out["payload"]["tokens"].as_array().unwrap().len(), m, "{out}");
    assert!(out["receipt"].as_str().unwrap().starts_with("Thank you"), "{out}");
    assert_eq!(reports_stored(&server), m as f64);
    // The redemption in progress is gone once the memo holds the tokens.
    let kept: Vec<&str> = out["stored_after"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k.as_str().unwrap())
        .collect();
    assert!(kept.iter().all(|k| !k.starts_with("redemption:")), "{kept:?}");
    // No URL the page requested carries the code outside the link's fragment (which the
    // browser never sends; Chromium reports the navigation with it), the server's log holds no
    // code, and no request carries text of the export.
    for r in out["requests"].as_array().unwrap() {
        let sent = r["url"].as_str().unwrap().split('#').next().unwrap();
        assert!(!sent.contains(code), "{r}");
    }
    check_requests(&out, &server.url, &export);
    let log = server.log.clone();
    drop(server);
    assert!(!std::fs::read_to_string(&log).unwrap().contains(code));
    std::fs::remove_dir_all(&dir).ok();
}

/// Donations made through the page, one public conversation per device, with the shipped
/// default study.
const DONATIONS: usize = 300;

#[test]
fn donations_from_the_page_reach_the_server_as_the_devices_drew_them() {
    let dir = temp("donations");
    let export = dir.join("public.json");
    write_sharegpt_sample(&cached("corpus/sharegpt.json"), DONATIONS, &export);
    let analyses: BTreeMap<String, Analysis> = analyses_of(&export).into_iter().map(|a| (a.id.clone(), a)).collect();
    let www = workspace_root().join("www");
    let server = ServerProcess::start(&dir.join("data"), None, &["--www", www.to_str().unwrap()]);
    let study: CompiledStudy = serde_json::from_str(&server.get("/api/v1/studies/chorus-default").1).unwrap();
    let out = node(
        "donations.mjs",
        &[
            &server.url,
            "chorus-default",
            export.to_str().unwrap(),
            &DONATIONS.to_string(),
        ],
    );
    let donations = out["donations"].as_array().unwrap();
    assert_eq!(donations.len(), DONATIONS);
    // What the server stored, by pseudonym: each donation's one report.
    let storage = chorus_server::storage::open(&server.data_dir.join("chorus.sqlite3").to_string_lossy()).unwrap();
    let mut stored: BTreeMap<String, Vec<Report>> = BTreeMap::new();
    storage
        .batches(&study.id, &study.version, &mut |b| {
            stored.insert(b.contributor, serde_json::from_str(&b.body).unwrap());
        })
        .unwrap();
    let mut reports = Vec::new();
    for d in donations {
        let id = d["id"].as_str().unwrap();
        // Every row but one unticked: nothing could be sent, and the button said why.
        assert_eq!(d["nothing"]["disabled"], true, "{d}");
        assert!(
            d["nothing"]["text"].as_str().unwrap().contains("Include at least one"),
            "{d}"
        );
        assert_eq!(
            d["sampled"],
            serde_json::json!([id]),
            "the page reported another conversation"
        );
        let report = stored[d["contributor"].as_str().unwrap()].clone();
        assert_eq!(report.len(), 1);
        reports.push((analyses[id].clone(), report[0].clone()));
    }
    check_requests(&out, &server.url, &export);
    drop(server);
    // The server's view of each report against the device's own facets.
    let agreement = |reports: &[(Analysis, Report)]| agreement(&study, reports);
    // Each z is a mean of independent reports' noise over its standard error: beyond 4.5 by
    // chance with probability 7·10⁻⁶, so for eight channels about once in 20,000 runs. An
    // altered seed or value moves the mean by about its whole expectation (z ≈ −8 for the
    // category, as the control below shows).
    for (channel, n, z) in agreement(&reports) {
        eprintln!("{channel:?}: {n} browser reports, agreement with the devices' facets z = {z:.2}");
        assert!(
            z.abs() < 4.5,
            "{channel:?}: the server's reports disagree with the devices' facets (z = {z:.2}, {n} reports)"
        );
    }
    // The same check on seeds that went through a JavaScript number (2^53) fails: it would
    // catch the corruption it exists for.
    let rounded: Vec<(Analysis, Report)> = reports
        .iter()
        .map(|(a, r)| {
            let mut r = r.clone();
            for value in r.channels.values_mut() {
                if let Privatized::Hashed { seed, bucket } = value.clone() {
                    *value = Privatized::Hashed {
                        seed: seed as f64 as u64,
                        bucket,
                    };
                }
            }
            (a.clone(), r)
        })
        .collect();
    let category = agreement(&rounded)
        .into_iter()
        .find(|(c, _, _)| *c == Channel::Category)
        .unwrap();
    eprintln!(
        "the same reports with seeds rounded as a JavaScript number rounds them: category z = {:.2}",
        category.2
    );
    assert!(category.2 < -4.5, "rounded seeds pass unnoticed: {category:?}");
    std::fs::remove_dir_all(&dir).ok();
}

/// Per channel: how far the server's reports are from what the devices' own facets make them
/// expect, in standard errors. Each report's unbiased indicator of its device's own value has
/// expectation 1 (for the category, drawn from the classifier's probabilities p, the indicators
/// weighted by p have expectation Σp²); a report whose seed or value was altered in transit has
/// expectation 0.
fn agreement(study: &CompiledStudy, reports: &[(Analysis, Report)]) -> Vec<(Channel, usize, f64)> {
    let categories = study.category_ids();
    let mut out = Vec::new();
    for plan in &study.privacy.channels {
        let mut differences = Vec::new();
        for (analysis, report) in reports {
            let Some(value) = report.channels.get(&plan.channel) else {
                continue;
            };
            let (observed, expected) = match (plan.channel, &analysis.category_probabilities) {
                (Channel::Category, Some(p)) => (
                    p.iter()
                        .enumerate()
                        .map(|(c, &w)| w as f64 * plan.oracle.support_indicator(value, c))
                        .sum::<f64>(),
                    p.iter().map(|&w| (w as f64).powi(2)).sum::<f64>(),
                ),
                _ => {
                    let own = study
                        .privacy
                        .channel_value(plan.channel, analysis, &categories)
                        .unwrap();
                    (plan.oracle.support_indicator(value, own), 1.0)
                }
            };
            differences.push(observed - expected);
        }
        let n = differences.len() as f64;
        if n < 20.0 {
            continue;
        }
        let mean = differences.iter().sum::<f64>() / n;
        let sd = (differences.iter().map(|d| (d - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt();
        out.push((plan.channel, differences.len(), mean / (sd / n.sqrt())));
    }
    out
}

#[test]
fn an_auditor_reads_a_verified_release() {
    let dir = temp("audit");
    // 2,000 demo contributors: enough for the largest categories and top-level topics to be
    // published under the release's rule (at 600, only the largest category is).
    let server = demo_server_with_release(&dir, 2000);
    let out = node("audit.mjs", &[&server.url, screenshots().to_str().unwrap()]);
    assert_eq!(out["signature"], "verified", "{}", out["signature_text"]);
    assert_eq!(out["demo_banner"], true);
    assert!(out["bar_charts"].as_u64().unwrap() >= 5, "{out}");
    // A bar for every published cell of the charts the page draws (the category mix, debiased
    // where the release publishes that, and each other facet), and none for a withheld one.
    // How many cells a demo release publishes varies with its secure noise, so the count is
    // read from the release itself rather than fixed.
    let releases: Value = serde_json::from_str(&server.get("/api/v1/releases").1).unwrap();
    let id = releases.as_array().unwrap().last().unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let signed: Value = serde_json::from_str(&server.get(&format!("/api/v1/releases/{id}")).1).unwrap();
    let published = |cells: &Value| {
        cells
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| c.get("share").is_some())
            .count() as u64
    };
    let facets = signed["release"]["facets"].as_object().unwrap();
    let drawn: u64 = facets
        .iter()
        .map(|(name, facet)| match (name.as_str(), facet.get("debiased")) {
            ("category", Some(debiased)) => published(debiased),
            _ => published(&facet["cells"]),
        })
        .sum();
    assert!(drawn >= 1, "the demo release publishes no facet cell");
    assert_eq!(out["bars"].as_u64().unwrap(), drawn, "{out}");
    assert!(out["treemap_cells"].as_u64().unwrap() >= 2, "{out}");
    assert_eq!(
        out["tree_topics"],
        4 + 12 + 48,
        "every topic of the codebook in the tree"
    );
    assert!(out["privacy_rows"].as_u64().unwrap() >= 8, "{out}");
    // Every plausibility check of the release, one row each.
    let checks = signed["release"]["plausibility"]["checks"].as_array().unwrap().len() as u64;
    assert!(checks >= 1, "the demo release runs no plausibility check");
    assert_eq!(out["plausibility_rows"].as_u64().unwrap(), checks, "{out}");
    assert_findings(&out, &signed["release"], &server);
    assert_trust_details(&out, &server, &dir);
    // The map: one circle per leaf of the codebook; the leaves are described in the person's
    // words the codebook carries, not by keywords.
    assert_eq!(out["map_dots"], 48, "{out}");
    // Under each top-level topic, its languages: as many as the release publishes cells of the
    // top level × language cross-tab for it (where the topic itself is published).
    let tab = signed["release"]["crosstabs"]
        .as_object()
        .unwrap()
        .iter()
        .find(|(name, _)| name.starts_with("topic_level1"))
        .map(|(_, tab)| tab.clone());
    let top_level = signed["release"]["topics"]["levels"][0].as_array().unwrap();
    let expected: Vec<u64> = top_level
        .iter()
        .map(|topic| {
            let cells = tab.as_ref().map_or(0, |tab| {
                tab["cells"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .filter(|c| c["row"] == topic["value"] && c.get("share").is_some())
                    .count()
            });
            if topic.get("share").is_some() {
                cells as u64
            } else {
                0
            }
        })
        .collect();
    assert_eq!(out["languages_within"], serde_json::json!(expected), "{out}");
    let described = out["tree_descriptions"].as_array().unwrap();
    assert_eq!(described.len(), 48);
    assert!(
        described
            .iter()
            .any(|d| d.as_str().unwrap().contains("Python programs")),
        "{out}"
    );
    assert_eq!(
        out["accessibility"],
        serde_json::json!([]),
        "axe-core: serious violations"
    );
    assert_eq!(out["narrow_overflow"], false, "the page overflows a narrow screen");
    assert_eq!(
        out["narrow_overflow_reloaded"], false,
        "the page opened on a phone overflows"
    );
    assert_eq!(
        out["resized_small_text"],
        serde_json::json!([]),
        "text under 12 px after resizing to 390 px"
    );
    assert_eq!(
        out["narrow_small_text"],
        serde_json::json!([]),
        "text under 12 px at 390 px"
    );
    for r in out["requests"].as_array().unwrap() {
        let url = r["url"].as_str().unwrap();
        assert!(
            url.starts_with(&server.url) || url.starts_with("data:"),
            "a request off the server: {url}"
        );
    }
    drop(server);
    std::fs::remove_dir_all(&dir).ok();
}

/// The page shows the server's key in full to compare out of band, and the command it gives
/// verifies the release it links to with that key (and fails on a changed byte).
fn assert_trust_details(out: &Value, server: &ServerProcess, dir: &Path) {
    let key: Value = serde_json::from_str(&server.get("/api/v1/public-key").1).unwrap();
    assert_eq!(out["fingerprint"], key["public_key"], "{out}");
    let command = out["verify_command"].as_str().unwrap();
    assert!(
        command.contains("chorus verify release.json --key key.json"),
        "{command}"
    );
    let (status, release) = server.get(out["release_href"].as_str().unwrap());
    assert_eq!(status, 200);
    std::fs::write(dir.join("release.json"), &release).unwrap();
    std::fs::write(dir.join("key.json"), key.to_string()).unwrap();
    let verify = || {
        std::process::Command::new(chorus_tests::chorus_bin())
            .args(["verify", "release.json", "--key", "key.json"])
            .current_dir(dir)
            .status()
            .unwrap()
            .success()
    };
    assert!(verify(), "the page's command does not verify its release");
    let mut changed: Value = serde_json::from_str(&release).unwrap();
    let reports = changed["release"]["counts"]["reports"].as_f64().unwrap();
    changed["release"]["counts"]["reports"] = serde_json::json!(reports + 1.0);
    std::fs::write(dir.join("release.json"), changed.to_string()).unwrap();
    assert!(!verify(), "a changed release verifies");
}

/// The findings at the top of the auditor's page say what the release says: the largest
/// published category (corrected, where the release corrects it) by name with its share and
/// interval in whole percent, the largest top-level topic likewise, and the demo label.
fn assert_findings(out: &Value, release: &Value, server: &ServerProcess) {
    let findings: Vec<&str> = out["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap())
        .collect();
    assert!((3..=6).contains(&findings.len()), "{findings:?}");
    let spoken = |c: &Value| {
        let whole = |x: &Value| (100.0 * x.as_f64().unwrap()).round() as i64;
        format!(
            "{}% ({}–{}%)",
            whole(&c["share"]),
            whole(&c["ci95"][0]),
            whole(&c["ci95"][1])
        )
    };
    let largest = |cells: &Value| -> Option<Value> {
        cells
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| c.get("share").is_some())
            .max_by(|a, b| a["share"].as_f64().unwrap().total_cmp(&b["share"].as_f64().unwrap()))
            .cloned()
    };
    let category = &release["facets"]["category"];
    let mix = category.get("debiased").unwrap_or(&category["cells"]);
    let study: Value = serde_json::from_str(&server.get("/api/v1/studies/chorus-default").1).unwrap();
    if let Some(top) = largest(mix) {
        let name = study["categories"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["id"] == top["value"])
            .unwrap()["name"]
            .as_str()
            .unwrap()
            .to_lowercase();
        let expected = format!(
            "Among the conversations contributed, {} were about {name}",
            spoken(&top)
        );
        assert!(findings[0].starts_with(&expected), "{:?} vs {expected:?}", findings[0]);
    }
    if let Some(topic) = largest(&release["topics"]["levels"][0]) {
        let expected = format!(
            "The largest topic was “{}”, at {}.",
            topic["name"].as_str().unwrap(),
            spoken(&topic)
        );
        assert!(findings.contains(&expected.as_str()), "{findings:?} lacks {expected:?}");
    }
    assert!(findings.iter().any(|f| f.starts_with("Demo data")), "{findings:?}");
}
