//! A release as CSV, one row per published or suppressed cell, for spreadsheets. Derived from
//! the signed JSON document, which remains the authoritative (and verifiable) form.

use serde_json::Value;

fn field(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) if s.contains([',', '"', '\n']) => format!("\"{}\"", s.replace('"', "\"\"")),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// `table,row,column,share,ci95_low,ci95_high,count,suppressed,about` (a topic's column is its
/// name). `about` says, in the rows of the category's tables, what they estimate: without it a
/// spreadsheet would show the classifier's mix as if it were the true one.
pub fn to_csv(release: &Value) -> String {
    let mut out = String::from("table,row,column,share,ci95_low,ci95_high,count,suppressed,about\n");
    let mut row = |table: &str, r: &Value, c: &Value, cell: &Value, about: &Value| {
        let ci = &cell["ci95"];
        out.push_str(
            &[
                table.to_owned(),
                field(r),
                field(c),
                field(&cell["share"]),
                field(&ci[0]),
                field(&ci[1]),
                field(&cell["count"]),
                cell["suppressed"].as_bool().unwrap_or(false).to_string(),
                field(about),
            ]
            .join(","),
        );
        out.push('\n');
    };
    if let Some(facets) = release["facets"].as_object() {
        for (name, facet) in facets {
            let about = &facet["estimates"];
            for cell in facet["cells"].as_array().into_iter().flatten() {
                row(name, &cell["value"], &Value::Null, cell, about);
            }
            for cell in facet["debiased"].as_array().into_iter().flatten() {
                row(&format!("{name}_debiased"), &cell["value"], &Value::Null, cell, about);
            }
        }
    }
    for (depth, level) in release["topics"]["levels"].as_array().into_iter().flatten().enumerate() {
        for cell in level.as_array().into_iter().flatten() {
            row(
                &format!("topic_level{}", depth + 1),
                &cell["value"],
                &cell["name"],
                cell,
                &Value::Null,
            );
        }
    }
    if let Some(tabs) = release["crosstabs"].as_object() {
        for (name, tab) in tabs {
            for cell in tab["cells"].as_array().into_iter().flatten() {
                row(name, &cell["row"], &cell["column"], cell, &Value::Null);
            }
        }
    }
    out
}
