//! The data directory at rest: nothing in it is readable by another local account.

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use hub_tests::{all_roles_token_of, authorized_client, fixture, owner_of};

use crate::process::{HubProcess, settings_file, tokens_of};

/// Every directory and file under `dir` (links not followed), with its permission bits.
fn modes_under(dir: &Path) -> Vec<(PathBuf, u32)> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(path) = pending.pop() {
        let metadata = std::fs::symlink_metadata(&path).expect("metadata");
        found.push((path.clone(), metadata.permissions().mode() & 0o777));
        if metadata.is_dir() {
            for entry in std::fs::read_dir(&path).expect("listing") {
                pending.push(entry.expect("entry").path());
            }
        }
    }
    found
}

/// A data directory an operator made beforehand, open to every local account, is closed
/// at start (and the log says so); every file the hub then writes, the databases' write-ahead
/// logs included, is its owner's alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_data_directory_and_every_file_in_it_are_the_owners_alone() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");
    std::fs::create_dir(&data).expect("the operator's directory");
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).expect("open");
    let notes = data.join("notes.txt");
    std::fs::write(&notes, "set up on the 7th").expect("a file of the operator's");
    std::fs::set_permissions(&notes, std::fs::Permissions::from_mode(0o644)).expect("open");

    let mut server = HubProcess::start(&data, &settings_file(dir.path(), ""), Vec::new());
    server.wait_ready(&reqwest::Client::new()).await;
    let body = fixture("ees.json");
    let state = owner_of("ees", body.as_bytes()).expect("a valid record");
    let pushed = authorized_client(&all_roles_token_of(&tokens_of(&data), &state))
        .post(format!("{}/v1/systems/ees/records", server.base))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .expect("the hub answers");
    assert_eq!(pushed.status(), 201);

    let modes = modes_under(&data);
    assert!(
        modes
            .iter()
            .any(|(path, _)| path.ends_with("civil.sqlite-wal")),
        "the write-ahead log is among the files checked: {modes:?}"
    );
    let open: Vec<(&PathBuf, String)> = modes
        .iter()
        .filter(|(path, mode)| {
            let owner_only = if path.is_dir() { 0o700 } else { 0o600 };
            *mode != owner_only
        })
        .map(|(path, mode)| (path, format!("{mode:o}")))
        .collect();
    assert!(open.is_empty(), "open to others: {open:?}");
    assert!(
        server.log_text().contains("open to other local users"),
        "the start says what it closed"
    );
    assert!(server.terminate(Duration::from_secs(30)).await);
}
