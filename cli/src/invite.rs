//! `chorus invite`: one-time invitations to a study that admits invited contributors only. The
//! store keeps a hash of each code; the codes themselves are printed once, here, for the
//! operator to hand out (as links, the code sits in the URL's fragment, which a browser never
//! sends to a server and no log records).

use crate::serve::ServerArgs;
use chorus_server::invitations::{code_hash, new_codes};
use chorus_server::storage;
use chorus_shared::study::Access;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    server: ServerArgs,
    /// The id of the study the invitations are for.
    #[arg(long = "study", value_name = "ID")]
    id: String,
    /// How many invitations to create (each pays for one contributor's reports).
    #[arg(long, default_value_t = 1)]
    count: usize,
    /// Print links to the contributor's page at this address (`URL/contribute.html?study=ID#invitation=CODE`)
    /// instead of bare codes.
    #[arg(long, value_name = "URL")]
    base_url: Option<String>,
}

pub fn run(args: Args) -> Result<ExitCode, String> {
    if args.count == 0 || args.count > 1_000_000 {
        return Err("--count takes 1 to 1,000,000 invitations at a time".into());
    }
    let config = args.server.config()?;
    let studies = args.server.studies(&config)?;
    let study = studies
        .iter()
        .find(|s| s.id == args.id)
        .ok_or_else(|| format!("no study `{}` among the configured studies", args.id))?;
    if study.access == Access::Open {
        return Err(format!(
            "study `{}` is open to anyone (access = \"open\"): it takes no invitations",
            study.id
        ));
    }
    let codes = new_codes(args.count)?;
    let hashes: Vec<String> = codes.iter().map(|c| code_hash(&study.id, c)).collect();
    let storage = storage::open(&config.database()).map_err(|e| e.to_string())?;
    storage.add_invitations(&study.id, &hashes).map_err(|e| e.to_string())?;
    for code in &codes {
        match &args.base_url {
            Some(base) => println!(
                "{}/contribute.html?study={}#invitation={code}",
                base.trim_end_matches('/'),
                study.id
            ),
            None => println!("{code}"),
        }
    }
    eprintln!(
        "chorus: {} invitation{} to study {}, each for {} report{}",
        codes.len(),
        if codes.len() == 1 { "" } else { "s" },
        study.id,
        study.privacy.reports_per_contributor,
        if study.privacy.reports_per_contributor == 1 {
            ""
        } else {
            "s"
        }
    );
    Ok(ExitCode::SUCCESS)
}
