//! First run: `chorus serve --demo-corpus` on an empty store seeds demo contributions through
//! the real client pipeline and cuts a first release labelled demo; a restart does not seed
//! again, and later releases from that store are labelled demo too.

use chorus_tests::release_fields::{impossible_values, numeric_sources};
use chorus_tests::{cached, write_sharegpt_sample, ServerProcess};
use serde_json::Value;
use std::time::{Duration, Instant};

const DEMO_CONTRIBUTORS: usize = 400;

#[test]
fn a_first_run_seeds_demo_contributions_and_a_release() {
    let dir = std::env::temp_dir().join(format!("chorus-demo-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let corpus = dir.join("public.json");
    write_sharegpt_sample(&cached("corpus/sharegpt.json"), DEMO_CONTRIBUTORS, &corpus);
    let data = dir.join("data");
    let demo_args = [
        "--demo-corpus",
        corpus.to_str().unwrap(),
        "--demo-contributors",
        &DEMO_CONTRIBUTORS.to_string(),
    ];
    let server = ServerProcess::start(&data, None, &demo_args);

    // The server answers while it seeds; the release appears when the seeding is done.
    let started = Instant::now();
    let list = loop {
        let (status, body) = server.get("/api/v1/releases");
        assert_eq!(status, 200, "{body}");
        let list: Vec<Value> = serde_json::from_str(&body).unwrap();
        if !list.is_empty() {
            break list;
        }
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "no demo release after 5 minutes: {}",
            std::fs::read_to_string(&server.log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    assert_eq!(list.len(), 1, "{list:?}");
    let id = list[0]["id"].as_str().unwrap().to_owned();
    let release: Value = serde_json::from_str(&server.get(&format!("/api/v1/releases/{id}")).1).unwrap();
    assert_eq!(release["release"]["demo"], true, "the first release is labelled demo");
    let reports = release["release"]["counts"]["reports"].as_f64().unwrap();
    assert!(
        (reports - DEMO_CONTRIBUTORS as f64).abs() < 60.0,
        "{reports} reports (central noise has scale 4)"
    );
    assert!(release["release"]["topics"]["levels"]
        .as_array()
        .is_some_and(|l| l.len() == 3));
    // What a newcomer reads first: no impossible share, no number without a source.
    assert_eq!(impossible_values(&release["release"]), Vec::<String>::new());
    if let Err(unknown) = numeric_sources(&release["release"]) {
        panic!("numbers of unknown source in the demo release: {unknown:?}");
    }
    drop(server);

    // A restart finds the store seeded: no second seeding, and a new release is still demo.
    let server = ServerProcess::start(&data, None, &demo_args);
    std::thread::sleep(Duration::from_secs(2));
    let (status, body) = server.post("/api/v1/admin/studies/chorus-default/releases", "");
    assert_eq!(status, 201, "{body}");
    let summary: Value = serde_json::from_str(&body).unwrap();
    let path = format!("/api/v1/releases/{}", summary["id"].as_str().unwrap());
    let second: Value = serde_json::from_str(&server.get(&path).1).unwrap();
    assert_eq!(second["release"]["demo"], true, "{second}");
    let again = second["release"]["counts"]["reports"].as_f64().unwrap();
    assert!((again - DEMO_CONTRIBUTORS as f64).abs() < 60.0, "seeded twice? {again}");
    drop(server);
    std::fs::remove_dir_all(&dir).ok();
}
