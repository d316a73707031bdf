//! What the README says leaves the device is what the shipped default study does: its table of
//! channels names each channel's domain size, mechanism, budget and pool as the compiled study
//! has them (the mechanism is picked by the study's compilation, so a change of budget or domain
//! can change it; the table must follow).

use chorus_messages::Channel;
use chorus_shared::privacy::oracle::Oracle;
use chorus_tests::{compile_study, workspace_root};

fn number_word(n: usize) -> String {
    ["zero", "one", "two", "three", "four", "five", "six"]
        .get(n)
        .map_or_else(|| n.to_string(), |w| (*w).to_owned())
}

#[test]
fn the_readme_names_the_shipped_mechanisms() {
    let readme = std::fs::read_to_string(workspace_root().join("README.md")).unwrap();
    let start = readme.find("<!-- channels:").expect("the README's table of channels");
    let end = readme.find("<!-- end of channels -->").expect("the end of the table");
    let rows: Vec<Vec<&str>> = readme[start..end]
        .lines()
        .filter(|l| l.starts_with('|') && !l.starts_with("|---") && !l.starts_with("| channel"))
        .map(|l| l.trim_matches('|').split('|').map(str::trim).collect())
        .collect();
    let study = compile_study(None);
    let plan = &study.privacy;
    assert_eq!(rows.len(), plan.channels.len(), "one row per channel: {rows:?}");
    let pools = plan.pools();
    for c in &plan.channels {
        let row = rows
            .iter()
            .find(|r| r[0] == c.channel.name())
            .unwrap_or_else(|| panic!("no README row for {}", c.channel.name()));
        assert_eq!(row[1], c.labels.len().to_string(), "{row:?}");
        let mechanism = match c.oracle {
            Oracle::Krr { .. } => "randomized response (k-RR)",
            Oracle::Olh { .. } => "local hashing (OLH)",
            Oracle::Oue { .. } => "unary encoding (OUE)",
        };
        assert_eq!(row[2], mechanism, "{row:?}");
        assert_eq!(row[3].parse::<f64>().unwrap(), c.oracle.epsilon(), "{row:?}");
        let carried = match &c.pool {
            None => "every report".to_owned(),
            Some(pool) => format!(
                "one report in {} (the `{pool}` pool)",
                number_word(pools[pool.as_str()].len())
            ),
        };
        assert_eq!(row[4], carried, "{row:?}");
    }
}

/// A channel's name is written three times (its serde name, `Channel::name`, the API
/// description): one name, checked here.
#[test]
fn a_channel_has_one_name_on_the_wire_in_releases_and_in_the_api_description() {
    let openapi = std::fs::read_to_string(workspace_root().join("server/openapi.json")).unwrap();
    for channel in Channel::ALL {
        assert_eq!(serde_json::to_value(channel).unwrap(), channel.name());
        assert!(
            openapi.contains(channel.name()),
            "openapi.json does not name {}",
            channel.name()
        );
    }
}
