//! A study that admits invited contributors only, served by `chorus serve` on SQLite and on
//! PostgreSQL. `chorus invite` makes invitations; a device redeems one for blind signatures and
//! unblinds them into anonymous one-time tokens (Privacy Pass, blind RSA), one per report, with
//! its reports' OLH seeds derived from them; the server stores such a batch (sent by hand, and
//! by `chorus contribute --invitation`). Fabricated batches
//! are all refused and store nothing: without tokens, with spent tokens, with tokens of another
//! key or study, forged, or with a hash seed its token does not fix; an invitation pays once.
//!
//! Unlinkability: nothing the server keeps or prints joins a batch or a token to the invitation
//! that paid for it. The store's invitation rows hold a code's hash and a hash of the blinded
//! request, and no value of them appears with the batches or spent nonces (nor the reverse);
//! the log and the metrics hold no code, hash, blinded input, signature, token or nonce. (That
//! the blinded inputs themselves reveal nothing of the tokens is RFC 9474's guarantee.)

use chorus_messages::{ReportBatch, PROTOCOL_VERSION};
use chorus_shared::device::PendingTokens;
use chorus_shared::privacy::noise::Noise;
use chorus_shared::study::CompiledStudy;
use chorus_shared::tokens::{challenge_digest, IssuerKey, Token, TokenPublicKey, TokenRequest};
use chorus_shared::Analysis;
use chorus_tests::invited::{invite, invited_study};
use chorus_tests::{analyses_for_study, chorus_bin, compile_study, fixture, fresh_postgres_database, ServerProcess};
use serde_json::{json, Value};
use std::path::Path;

#[test]
fn only_invited_tokens_count_on_sqlite_then_postgres() {
    run(None, "invited-sqlite");
    run(Some(&fresh_postgres_database("invited")), "invited-postgres");
}

fn run(database: Option<&str>, name: &str) {
    let dir = std::env::temp_dir().join(format!("chorus-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let study_file = invited_study(&dir);
    let study = compile_study(Some(&study_file));
    let analyses = analyses_for_study(&fixture("chatgpt/conversations.json"), Some(&study_file));
    let data = dir.join("data");
    let codes = invite(&data, database, &study_file, 4, None);
    assert_eq!(codes.len(), 4);
    let study_arg = ["--study-file", study_file.to_str().unwrap()];
    let server = ServerProcess::start(&data, database, &study_arg);
    let key = served_key(&server, &study);
    let path = format!("/api/v1/studies/{}/reports", study.id);
    let mut seen = Secrets::default();

    // An invitation pays for one contributor's reports; a batch made with them is stored.
    let tokens = redeem(&server, &study, &key, &codes[0], &mut seen).unwrap();
    let honest = batch(&study, &analyses, &tokens, 1);
    assert_eq!(post(&server, &path, &honest).0, 201);
    let stored = stored_reports(&server);
    assert_eq!(stored, study.privacy.reports_per_contributor as u64);

    // An invitation pays once (a retry of the same request is answered again, with nothing
    // new); an unknown code is refused.
    assert_eq!(redeem(&server, &study, &key, &codes[0], &mut seen).unwrap_err(), 409);
    assert_eq!(
        redeem(
            &server,
            &study,
            &key,
            "0000-0000-0000-0000-0000-0000-0000-0000",
            &mut seen
        )
        .unwrap_err(),
        403
    );

    // Fabricated batches: every one refused, nothing stored.
    let refused = |what: &str, b: &ReportBatch, status: u16, code: &str| {
        let (got, body) = post(&server, &path, b);
        assert_eq!((got, body.contains(code)), (status, true), "{what}: {got} {body}");
        assert_eq!(stored_reports(&server), stored, "{what} stored something");
    };
    refused("no tokens", &batch(&study, &analyses, &[], 2), 403, "token_refused");
    refused(
        "spent tokens",
        &batch(&study, &analyses, &tokens, 3),
        409,
        "token_spent",
    );
    let other_key = IssuerKey::generate().unwrap();
    let foreign = local_tokens(&other_key, challenge_digest(&study.id, &study.version), tokens.len());
    refused(
        "another key",
        &batch(&study, &analyses, &foreign, 4),
        403,
        "token_refused",
    );
    let other_study = local_tokens(
        &other_key,
        challenge_digest("another-study", &study.version),
        tokens.len(),
    );
    refused(
        "another study",
        &batch(&study, &analyses, &other_study, 5),
        403,
        "token_refused",
    );
    let fresh = redeem(&server, &study, &key, &codes[1], &mut seen).unwrap();
    let mut forged = fresh.clone();
    forged[0].authenticator[40] ^= 1;
    refused(
        "a forged token",
        &batch(&study, &analyses, &forged, 6),
        403,
        "token_refused",
    );
    let mut chosen = batch(&study, &analyses, &fresh, 7);
    match chosen.reports[0].channels.get_mut(&chorus_messages::Channel::Category) {
        Some(chorus_messages::Privatized::Hashed { seed, .. }) => *seed ^= 1,
        other => panic!("the category is reported by OLH: {other:?}"),
    }
    refused("a chosen seed", &chosen, 403, "token_refused");
    // The second invitation's tokens were never spent by those refusals.
    assert_eq!(post(&server, &path, &batch(&study, &analyses, &fresh, 8)).0, 201);
    let stored = stored_reports(&server);
    assert_eq!(stored, 2 * study.privacy.reports_per_contributor as u64);

    // `chorus contribute` as a device does it: without an invitation it cannot; with one it
    // redeems, sends, and a second run re-sends the very batch (a replay, nothing new).
    let contribute_with = |memo: &Path, invitation: Option<&str>| {
        let mut command = std::process::Command::new(chorus_bin());
        command
            .args(["contribute", "--server", &server.url, "--study", "invited", "--memo"])
            .arg(memo)
            .arg(fixture("chatgpt/conversations.json"));
        if let Some(code) = invitation {
            command.args(["--invitation", code]);
        }
        command.output().unwrap()
    };
    let memo = dir.join("memo.json");
    let contribute = |invitation: Option<&str>| contribute_with(&memo, invitation);
    let out = contribute(None);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("invited contributors only"));
    let out = contribute(Some(&codes[2]));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let receipt: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(receipt["replayed"], false);
    // Its token requests were kept beside the memo until the memo held the tokens.
    assert!(!memo.with_extension("pending-tokens.json").exists());
    let out = contribute(None);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(serde_json::from_slice::<Value>(&out.stdout).unwrap()["replayed"], true);
    let stored = stored_reports(&server);
    assert_eq!(stored, 3 * study.privacy.reports_per_contributor as u64);

    // A run that died after its redemption reached the server: the invitation is spent, but the
    // next run sends the token requests it kept, gets the same signatures, and contributes.
    let second_memo = dir.join("second-memo.json");
    let pending = PendingTokens::new(&study, &key, &mut Noise::Secure).unwrap();
    std::fs::write(
        second_memo.with_extension("pending-tokens.json"),
        serde_json::to_vec(&pending).unwrap(),
    )
    .unwrap();
    let lost = serde_json::to_string(&pending.redemption(&codes[3])).unwrap();
    assert_eq!(
        server.post(&format!("/api/v1/studies/{}/tokens", study.id), &lost).0,
        200
    );
    assert_eq!(redeem(&server, &study, &key, &codes[3], &mut seen).unwrap_err(), 409);
    let out = contribute_with(&second_memo, Some(&codes[3]));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(
        stored_reports(&server),
        4 * study.privacy.reports_per_contributor as u64
    );

    // The release says who could contribute.
    let (status, body) = http_admin_release(&server, &study);
    assert_eq!(status, 201, "{body}");
    let releases: Value = serde_json::from_str(&server.get("/api/v1/releases").1).unwrap();
    let id = releases[0]["id"].as_str().unwrap().to_owned();
    let release: Value = serde_json::from_str(&server.get(&format!("/api/v1/releases/{id}")).1).unwrap();
    assert_eq!(release["release"]["study"]["access"], "invited");
    assert!(release["release"]["study"]["who_contributed"]
        .as_str()
        .unwrap()
        .contains("invited"));

    // Unlinkable: nothing the server kept or printed joins a token to its invitation.
    let log = std::fs::read_to_string(&server.log).unwrap();
    let (_, metrics) = server.admin_get("/metrics");
    for secret in seen.all(&study, &codes) {
        assert!(!log.contains(&secret), "the log holds {secret}");
        assert!(!metrics.contains(&secret), "the metrics hold {secret}");
    }
    drop(server);
    let rows = dump(database.unwrap_or(data.join("chorus.sqlite3").to_str().unwrap()));
    let invitation_values: Vec<&String> = rows["invitations"].iter().flatten().filter(|v| v.len() > 8).collect();
    assert_eq!(rows["invitations"].len(), codes.len(), "every invitation, by hash");
    for table in ["batches", "spent_tokens", "contributors"] {
        for value in rows[table].iter().flatten() {
            assert!(
                !invitation_values.iter().any(|v| value.contains(v.as_str())),
                "{table} holds {value}"
            );
        }
    }
    for nonce in rows["spent_tokens"].iter().flatten().filter(|v| v.len() == 64) {
        assert!(!invitation_values.iter().any(|v| v.contains(nonce.as_str())));
    }
    assert_eq!(rows["spent_tokens"].len(), 4 * tokens.len());
    std::fs::remove_dir_all(&dir).ok();
}

/// What the device and the issuer exchanged, which must not reach the log or the metrics.
#[derive(Default)]
struct Secrets {
    values: Vec<String>,
}

impl Secrets {
    fn all(&self, study: &CompiledStudy, codes: &[String]) -> Vec<String> {
        let mut all = self.values.clone();
        for code in codes {
            all.push(code.clone());
            all.push(chorus_server::invitations::code_hash(&study.id, code));
        }
        all
    }
}

fn served_key(server: &ServerProcess, study: &CompiledStudy) -> TokenPublicKey {
    let (status, body) = server.get(&format!("/api/v1/studies/{}/token-key", study.id));
    assert_eq!(status, 200, "{body}");
    let key: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(key["study_version"], study.version.as_str());
    let public = TokenPublicKey::from_spki(&hex::decode(key["spki"].as_str().unwrap()).unwrap()).unwrap();
    assert_eq!(hex::encode(public.id()), key["key_id"].as_str().unwrap());
    public
}

/// Redeems `code` as a device does: fresh nonces, blinded, signed, unblinded. The HTTP status
/// when refused.
fn redeem(
    server: &ServerProcess,
    study: &CompiledStudy,
    key: &TokenPublicKey,
    code: &str,
    seen: &mut Secrets,
) -> Result<Vec<Token>, u16> {
    let challenge = challenge_digest(&study.id, &study.version);
    let requests: Vec<TokenRequest> = (0..study.privacy.reports_per_contributor)
        .map(|_| TokenRequest::new(key, challenge, random_nonce()).unwrap())
        .collect();
    let blinded: Vec<String> = requests.iter().map(|r| hex::encode(r.blinded())).collect();
    let body = json!({"invitation": code, "blinded": blinded}).to_string();
    let (status, answer) = server.post(&format!("/api/v1/studies/{}/tokens", study.id), &body);
    seen.values.extend(blinded);
    if status != 200 {
        return Err(status);
    }
    let answer: Value = serde_json::from_str(&answer).unwrap();
    let signatures = answer["signatures"].as_array().unwrap();
    let tokens: Vec<Token> = requests
        .into_iter()
        .zip(signatures)
        .map(|(r, s)| {
            seen.values.push(s.as_str().unwrap().to_owned());
            r.finalize(key, &hex::decode(s.as_str().unwrap()).unwrap()).unwrap()
        })
        .collect();
    for t in &tokens {
        seen.values.push(t.to_hex());
        seen.values.push(t.nonce_hex());
    }
    Ok(tokens)
}

/// Tokens made without the server, under a key of the attacker's own.
fn local_tokens(issuer: &IssuerKey, challenge: [u8; 32], n: usize) -> Vec<Token> {
    (0..n)
        .map(|_| {
            let request = TokenRequest::new(issuer.public(), challenge, random_nonce()).unwrap();
            let signed = issuer.issue(request.blinded()).unwrap();
            request.finalize(issuer.public(), &signed).unwrap()
        })
        .collect()
}

fn random_nonce() -> [u8; 32] {
    let mut noise = Noise::Secure;
    let mut nonce = [0u8; 32];
    for chunk in nonce.chunks_mut(8) {
        chunk.copy_from_slice(&noise.uniform_u64().unwrap().to_be_bytes());
    }
    nonce
}

/// A batch of the study's reports, each privatized with its token (as many reports as tokens,
/// or the study's number without tokens); `n` makes its identifiers.
fn batch(study: &CompiledStudy, analyses: &[Analysis], tokens: &[Token], n: u32) -> ReportBatch {
    let m = study.privacy.reports_per_contributor as usize;
    let mut noise = Noise::Secure;
    let reports = (0..m)
        .map(|i| {
            let token = tokens.get(i);
            study
                .privacy
                .privatize_with_token(&analyses[i % analyses.len()], &study.category_ids(), token, &mut noise)
                .unwrap()
        })
        .collect();
    ReportBatch {
        protocol: PROTOCOL_VERSION,
        study_id: study.id.clone(),
        study_version: study.version.clone(),
        contributor: format!("{n:032x}"),
        idempotency_key: format!("{:032x}", 1000 + n),
        reports,
        tokens: tokens.iter().map(Token::to_hex).collect(),
    }
}

fn post(server: &ServerProcess, path: &str, batch: &ReportBatch) -> (u16, String) {
    server.post(path, &serde_json::to_string(batch).unwrap())
}

/// Reports the server has stored since it started (its metrics).
fn stored_reports(server: &ServerProcess) -> u64 {
    let (_, metrics) = server.admin_get("/metrics");
    metrics
        .lines()
        .find_map(|l| l.strip_prefix("chorus_reports_stored_total "))
        .map_or(0, |v| v.trim().parse::<f64>().unwrap() as u64)
}

fn http_admin_release(server: &ServerProcess, study: &CompiledStudy) -> (u16, String) {
    chorus_tests::http(
        &server.url,
        "ADMIN POST",
        &format!("/api/v1/admin/studies/{}/releases", study.id),
        Some("{}"),
    )
}

/// Every row of the tables that could join a token to an invitation, as text values.
fn dump(database: &str) -> std::collections::BTreeMap<&'static str, Vec<Vec<String>>> {
    let tables = ["invitations", "spent_tokens", "batches", "contributors"];
    let mut rows = std::collections::BTreeMap::new();
    if database.starts_with("postgres") {
        let mut client = postgres::Client::connect(database, postgres::NoTls).unwrap();
        for table in tables {
            let found = client
                .query(&format!("SELECT row_to_json(t)::text FROM {table} t"), &[])
                .unwrap()
                .iter()
                .map(|r| {
                    let row: Value = serde_json::from_str(&r.get::<_, String>(0)).unwrap();
                    row.as_object().unwrap().values().map(text).collect()
                })
                .collect();
            rows.insert(table, found);
        }
    } else {
        let conn = rusqlite::Connection::open(database).unwrap();
        for table in tables {
            let mut statement = conn.prepare(&format!("SELECT * FROM {table}")).unwrap();
            let columns = statement.column_count();
            let found = statement
                .query_map([], |r| {
                    Ok((0..columns)
                        .map(|c| match r.get_ref(c).unwrap() {
                            rusqlite::types::ValueRef::Text(t) => String::from_utf8_lossy(t).into_owned(),
                            other => format!("{other:?}"),
                        })
                        .collect())
                })
                .unwrap()
                .collect::<Result<Vec<Vec<String>>, _>>()
                .unwrap();
            rows.insert(table, found);
        }
    }
    rows
}

fn text(v: &Value) -> String {
    v.as_str().map_or_else(|| v.to_string(), str::to_owned)
}
