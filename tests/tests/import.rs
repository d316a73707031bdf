//! Import of every supported export format from the fixtures (tests/fixtures/generate.py).

use chorus_shared::import::{read_export, ImportError, ImportSummary};
use chorus_shared::{Conversation, Role};
use chorus_tests::fixture;
use std::fs::File;

fn import(name: &str) -> Result<(Vec<Conversation>, ImportSummary), ImportError> {
    let mut out = Vec::new();
    let file = File::open(fixture(name)).unwrap();
    let summary = read_export(file, name, &mut |c| out.push(c))?;
    Ok((out, summary))
}

fn ids(conversations: &[Conversation]) -> Vec<&str> {
    conversations.iter().map(|c| c.id.as_str()).collect()
}

fn texts(c: &Conversation) -> Vec<(Role, &str)> {
    c.turns.iter().map(|t| (t.role, t.text.as_str())).collect()
}

#[test]
fn chatgpt_follows_current_node_and_skips_what_is_not_a_visible_turn() {
    let (convs, summary) = import("chatgpt/conversations.json").unwrap();
    assert_eq!(ids(&convs), ["c-001", "c-002", "c-003", "c-004"]);
    assert_eq!(
        summary,
        ImportSummary {
            conversations: 4,
            skipped: 2,
            truncated: false
        }
    );

    let c = &convs[0];
    assert_eq!(c.title.as_deref(), Some("Fix Python CSV parser"));
    // No system node, no custom instructions, no abandoned edit, no tool call or tool output.
    let turns = texts(c);
    assert_eq!(turns.len(), 3, "{turns:?}");
    assert_eq!(turns[0].0, Role::User);
    assert!(turns[0].1.starts_with("My Python script crashes"));
    assert!(turns[1].1.contains("utf-8-sig"));
    assert_eq!(
        turns[2],
        (
            Role::Assistant,
            "The file starts with a byte-order mark, so utf-8-sig is the right encoding."
        )
    );
    let all: String = c.turns.iter().map(|t| t.text.as_str()).collect();
    for absent in ["ABANDONED", "data engineer", "print(open", "xef"] {
        assert!(!all.contains(absent), "{absent} leaked into the turns");
    }

    // The image part is dropped, the text part kept.
    let image = &convs[1];
    assert_eq!(image.turns.len(), 4);
    assert!(image.turns[0].text.starts_with("Voici une photo"));
    assert!(!image.turns[0].text.contains("asset_pointer"));
}

#[test]
fn chatgpt_split_files_and_zips_give_the_same_conversations() {
    let (single, _) = import("chatgpt/conversations.json").unwrap();
    let (first, _) = import("chatgpt-split/conversations-000.json").unwrap();
    let (second, _) = import("chatgpt-split/conversations-001.json").unwrap();
    let split: Vec<_> = first.into_iter().chain(second).collect();
    assert_eq!(&split[..4], &single[..]);
    assert_eq!(ids(&split[4..]), ["c-101", "c-102", "c-103"]);

    let (zipped, summary) = import("chatgpt-export.zip").unwrap();
    assert_eq!(
        zipped, split,
        "the zip holds the same conversations, its other files are ignored"
    );
    assert_eq!(
        summary,
        ImportSummary {
            conversations: 7,
            skipped: 2,
            truncated: false
        }
    );
    let (zipped_split, _) = import("chatgpt-split-export.zip").unwrap();
    assert_eq!(zipped_split, split, "split files inside a zip come in name order");
}

#[test]
fn claude_export_reads_text_and_content_blocks() {
    let (convs, summary) = import("claude/conversations.json").unwrap();
    assert_eq!(ids(&convs), ["claude-001", "claude-002"]);
    assert_eq!(summary.skipped, 1);
    assert_eq!(convs[0].title.as_deref(), Some("Explaining photosynthesis"));
    assert_eq!(
        texts(&convs[0]),
        [
            (
                Role::User,
                "Explain photosynthesis to a ten year old in three sentences."
            ),
            (
                Role::Assistant,
                "Plants catch sunlight with their leaves.\nThey turn water and air into sugar to grow."
            ),
        ]
    );
    assert_eq!(
        convs[1].turns[0].text,
        "What are good stretches for lower back pain after sitting all day?"
    );
}

#[test]
fn sharegpt_and_openai_jsonl() {
    let (convs, summary) = import("sharegpt.json").unwrap();
    assert_eq!(ids(&convs), ["sg-1", "sg-2"]);
    assert_eq!(summary.skipped, 1, "a conversation without a user turn is skipped");
    assert_eq!(convs[1].turns.len(), 2, "the system turn is not a turn");

    let (convs, summary) = import("openai.jsonl").unwrap();
    assert_eq!(
        summary,
        ImportSummary {
            conversations: 2,
            skipped: 1,
            truncated: false
        }
    );
    assert_eq!(convs[0].id, "oa-1");
    assert_eq!(
        texts(&convs[1]),
        [
            (Role::User, "How do I center a div with CSS grid?"),
            (Role::Assistant, "Use display: grid; place-items: center;")
        ]
    );
}

#[test]
fn a_cut_short_export_keeps_what_came_before() {
    let full = std::fs::read(fixture("sharegpt.json")).unwrap();
    let cut = &full[..full.len() * 2 / 3];
    let mut out = Vec::new();
    let summary = read_export(std::io::Cursor::new(cut), "cut", &mut |c| out.push(c)).unwrap();
    assert!(summary.truncated);
    assert!(!out.is_empty() && summary.skipped >= 1);
}

#[test]
fn unsupported_inputs_get_a_clear_error() {
    let expect = |name: &str, needle: &str| {
        let err = import(name).err().unwrap_or_else(|| panic!("{name} should fail"));
        let message = err.to_string();
        assert!(message.contains(needle), "{name}: {message}");
        if !matches!(err, ImportError::CorruptZip { .. }) {
            assert!(message.contains("Expected a ChatGPT export"), "{name}: {message}");
        }
    };
    expect("bad/empty.json", "is empty");
    expect("bad/zero-conversations.json", "holds no conversations");
    expect("bad/wrong-shape.json", "a JSON object with the fields items, version");
    expect(
        "bad/records-not-conversations.json",
        "JSON records with the fields email, name",
    );
    expect("bad/binary.bin", "a binary file");
    expect("bad/notes.txt", "not JSON");
    expect("bad/corrupt.zip", "damaged zip");
}

/// The progress an import reports follows the conversations as they come out (not the
/// position in the file, which a zip's directory at its end puts at 100% at once), and ends at
/// its total: a 400-conversation export is about half read at its 200th conversation.
#[test]
fn import_progress_follows_the_conversations_and_ends_at_its_total() {
    use chorus_shared::import::{read_export_with_progress, ImportProgress};
    let dir = std::env::temp_dir().join(format!("chorus-import-progress-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let export = dir.join("conversations.json");
    chorus_tests::write_chatgpt_export(&fixture("sharegpt.json"), 400, &export);
    let zipped = dir.join("export.zip");
    let mut zip = zip::ZipWriter::new(File::create(&zipped).unwrap());
    let bytes = std::fs::read(&export).unwrap();
    let mut html = b"<!DOCTYPE html><html><body>".to_vec();
    html.resize(bytes.len(), b' ');
    zip.start_file("chat.html", zip::write::SimpleFileOptions::default())
        .unwrap();
    std::io::Write::write_all(&mut zip, &html).unwrap();
    zip.start_file("conversations.json", zip::write::SimpleFileOptions::default())
        .unwrap();
    std::io::Write::write_all(&mut zip, &bytes).unwrap();
    zip.finish().unwrap();
    // The zip also holds a chat.html as large as the conversations, as ChatGPT's does: it is
    // passed over, and the conversations are the second half of the bytes.
    for (file, middle) in [(&export, 0.5), (&zipped, 0.75)] {
        let progress = ImportProgress::default();
        let mut seen = Vec::new();
        read_export_with_progress(File::open(file).unwrap(), "export", &progress, &mut |_| {
            let (done, total) = progress.bytes();
            seen.push(done as f64 / total as f64);
        })
        .unwrap();
        assert_eq!(seen.len(), 400);
        let (done, total) = progress.bytes();
        assert_eq!(done, total, "{}", file.display());
        // A 64 KiB read-ahead of a file of several megabytes: within 0.1 of the conversations'
        // share of it.
        assert!((seen[199] - middle).abs() < 0.1, "{}: {}", file.display(), seen[199]);
        assert!(seen.windows(2).all(|w| w[0] <= w[1]));
    }
    std::fs::remove_dir_all(&dir).ok();
}
