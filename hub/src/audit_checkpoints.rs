//! Signed audit checkpoints: where the audit chain ended (sequence number, head hash, time),
//! signed with an Ed25519 key kept outside the databases and appended to a log outside them.
//! The chain's hashes are unkeyed, so whoever can write the database can rewrite it from any
//! entry on; a checkpoint they cannot sign again reveals the rewrite.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
use ed25519_dalek::pkcs8::{DecodePrivateKey as _, DecodePublicKey as _, EncodePublicKey as _};
use ed25519_dalek::{Signature, Signer as _, SigningKey, Verifier as _, VerifyingKey};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::store::ChainEnd;

/// What a checkpoint's signature covers besides its fields: no other signed text of the
/// hub's reads alike.
const DOMAIN: &str = "interop-hub audit checkpoint v1";
/// The longest line a checkpoint takes (its fields are a number, a hash, a time and a
/// signature): longer lines are not checkpoints.
const MAX_LINE_BYTES: usize = 512;

/// One checkpoint, as a line of the checkpoint log (JSON).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Checkpoint {
    pub seq: i64,
    pub hash: String,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    /// Ed25519 over [`Checkpoint::message`], base64.
    pub signature: String,
}

impl Checkpoint {
    fn message(seq: i64, hash: &str, at: OffsetDateTime) -> String {
        format!(
            "{DOMAIN}\n{seq}\n{hash}\n{}",
            at.unix_timestamp_nanos() / 1_000_000
        )
    }

    /// The chain's end it vouches for.
    pub fn end(&self) -> ChainEnd {
        ChainEnd {
            seq: self.seq,
            hash: self.hash.clone(),
        }
    }
}

/// The public half of a checkpoint key kept at `key_path`: beside it, `.pub.pem`.
pub fn public_key_path(key_path: &Path) -> PathBuf {
    let name = key_path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let stem = name.strip_suffix(".key.pem").unwrap_or(&name);
    key_path.with_file_name(format!("{stem}.pub.pem"))
}

/// Signs checkpoints and appends them to the checkpoint log.
pub struct CheckpointSigner {
    key: SigningKey,
    log: PathBuf,
}

impl std::fmt::Debug for CheckpointSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CheckpointSigner")
            .field("log", &self.log)
            .finish_non_exhaustive()
    }
}

impl CheckpointSigner {
    /// The key at `key_path` (PKCS#8 PEM; made on first use, readable by the hub's user
    /// only, with its public half beside it), appending to `log`.
    pub fn open(key_path: &Path, log: &Path) -> anyhow::Result<Self> {
        if !key_path.exists() {
            if let Some(dir) = key_path.parent() {
                crate::data_dir::create(dir)?;
            }
            let (private, _) = crate::access::new_ed25519_pem()?;
            crate::data_dir::write_new_owner_only(key_path, private.as_bytes())?;
        }
        let pem = std::fs::read_to_string(key_path).map_err(|e| {
            anyhow::anyhow!("cannot read the checkpoint key {}: {e}", key_path.display())
        })?;
        let key = SigningKey::from_pkcs8_pem(&pem).map_err(|e| {
            anyhow::anyhow!(
                "{} is not an Ed25519 private key (PKCS#8 PEM): {e}",
                key_path.display()
            )
        })?;
        // The public half is the private one's, whatever was left beside it before.
        let public = key
            .verifying_key()
            .to_public_key_pem(LineEnding::LF)
            .map_err(|e| anyhow::anyhow!("cannot encode the checkpoint public key: {e}"))?;
        let public_path = public_key_path(key_path);
        if std::fs::read_to_string(&public_path).ok().as_deref() != Some(public.as_str()) {
            match std::fs::remove_file(&public_path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => anyhow::bail!("cannot replace {}: {e}", public_path.display()),
            }
            crate::data_dir::write_new_owner_only(&public_path, public.as_bytes())?;
        }
        if let Some(dir) = log.parent() {
            crate::data_dir::create(dir)?;
        }
        drop_cut_line(log)?;
        Ok(Self {
            key,
            log: log.to_owned(),
        })
    }

    /// The last checkpoint in the log, if any (unchecked: for knowing where to go on).
    pub fn last(&self) -> anyhow::Result<Option<Checkpoint>> {
        let checkpoints = match std::fs::File::open(&self.log) {
            Ok(file) => read_lines(std::io::BufReader::new(file))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => anyhow::bail!("cannot read {}: {e}", self.log.display()),
        };
        Ok(checkpoints
            .into_iter()
            .last()
            .map(|(_, checkpoint)| checkpoint))
    }

    /// Signs `end` at `at` and appends it to the log, on disk before it returns.
    pub fn append(&self, end: &ChainEnd, at: OffsetDateTime) -> anyhow::Result<Checkpoint> {
        let signature = self
            .key
            .sign(Checkpoint::message(end.seq, &end.hash, at).as_bytes());
        let checkpoint = Checkpoint {
            seq: end.seq,
            hash: end.hash.clone(),
            at,
            signature: STANDARD.encode(signature.to_bytes()),
        };
        let mut line = serde_json::to_string(&checkpoint)?;
        line.push('\n');
        let mut options = std::fs::OpenOptions::new();
        options.append(true).create(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options
            .open(&self.log)
            .map_err(|e| anyhow::anyhow!("cannot open {}: {e}", self.log.display()))?;
        file.write_all(line.as_bytes())?;
        file.sync_data()?;
        Ok(checkpoint)
    }
}

/// Drops a last line a crash cut short (it vouched for nothing), so that the next checkpoint
/// starts a line of its own. Only a crash leaves one: this process writes whole lines.
fn drop_cut_line(log: &Path) -> anyhow::Result<()> {
    let bytes = match std::fs::read(log) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => anyhow::bail!("cannot read {}: {e}", log.display()),
    };
    if bytes.last().is_none_or(|last| *last == b'\n') {
        return Ok(());
    }
    let complete = bytes
        .iter()
        .rposition(|byte| *byte == b'\n')
        .map_or(0, |at| at + 1);
    std::fs::OpenOptions::new()
        .write(true)
        .open(log)
        .and_then(|file| file.set_len(u64::try_from(complete).unwrap_or(0)))
        .map_err(|e| anyhow::anyhow!("cannot mend {}: {e}", log.display()))
}

/// Every checkpoint of the log at `log`, each checked against the public key at
/// `public_key`: a line that is not a checkpoint, or whose signature does not hold, fails the
/// whole reading, naming its line.
pub fn read_verified(log: &Path, public_key: &Path) -> anyhow::Result<Vec<Checkpoint>> {
    let pem = std::fs::read_to_string(public_key).map_err(|e| {
        anyhow::anyhow!(
            "cannot read the checkpoint public key {}: {e}",
            public_key.display()
        )
    })?;
    let key = VerifyingKey::from_public_key_pem(&pem).map_err(|e| {
        anyhow::anyhow!(
            "{} is not an Ed25519 public key (SPKI PEM): {e}",
            public_key.display()
        )
    })?;
    let file = std::fs::File::open(log)
        .map_err(|e| anyhow::anyhow!("cannot read the checkpoints {}: {e}", log.display()))?;
    let mut checkpoints = Vec::new();
    for (line, checkpoint) in read_lines(std::io::BufReader::new(file))? {
        let signature = STANDARD
            .decode(&checkpoint.signature)
            .ok()
            .and_then(|bytes| Signature::from_slice(&bytes).ok())
            .ok_or_else(|| anyhow::anyhow!("checkpoint line {line}: not a signature"))?;
        let message = Checkpoint::message(checkpoint.seq, &checkpoint.hash, checkpoint.at);
        key.verify(message.as_bytes(), &signature).map_err(|_| {
            anyhow::anyhow!(
                "checkpoint line {line} (entry {}): its signature does not hold: the \
                 checkpoint log was altered, or signed with another key",
                checkpoint.seq
            )
        })?;
        checkpoints.push(checkpoint);
    }
    Ok(checkpoints)
}

/// The checkpoints of a log, with their line numbers (from 1). A last line without its
/// newline is a checkpoint whose writing a crash cut short: it vouches for nothing, and is
/// skipped.
fn read_lines(mut reader: impl std::io::BufRead) -> anyhow::Result<Vec<(usize, Checkpoint)>> {
    let mut text = Vec::new();
    reader.read_to_end(&mut text)?;
    let complete = text
        .iter()
        .rposition(|byte| *byte == b'\n')
        .map_or(&text[..0], |end| &text[..=end]);
    let mut checkpoints = Vec::new();
    for (index, line) in complete.split(|byte| *byte == b'\n').enumerate() {
        let number = index + 1;
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        anyhow::ensure!(
            line.len() <= MAX_LINE_BYTES,
            "checkpoint line {number}: longer than a checkpoint"
        );
        let checkpoint: Checkpoint = serde_json::from_slice(line)
            .map_err(|e| anyhow::anyhow!("checkpoint line {number}: not a checkpoint: {e}"))?;
        checkpoints.push((number, checkpoint));
    }
    Ok(checkpoints)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checkpoints_are_signed_appended_and_an_altered_one_is_named() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let key = dir.path().join("keys").join("audit-checkpoint.key.pem");
        let log = dir.path().join("audit-checkpoints.jsonl");
        let signer = CheckpointSigner::open(&key, &log).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(signer.last().unwrap_or_else(|e| panic!("{e}")), None);
        let at =
            OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap_or_else(|e| panic!("{e}"));
        for seq in [10, 20] {
            let end = ChainEnd {
                seq,
                hash: format!("{seq:064x}"),
            };
            signer.append(&end, at).unwrap_or_else(|e| panic!("{e}"));
        }
        assert_eq!(
            signer
                .last()
                .unwrap_or_else(|e| panic!("{e}"))
                .map(|c| c.seq),
            Some(20)
        );
        let public = public_key_path(&key);
        assert!(public.ends_with("audit-checkpoint.pub.pem"));
        let read = read_verified(&log, &public).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(read.iter().map(|c| c.seq).collect::<Vec<_>>(), [10, 20]);

        // The same key again: a second signer reads the same key.
        let again = CheckpointSigner::open(&key, &log).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(again.key.verifying_key(), signer.key.verifying_key());

        let text = std::fs::read_to_string(&log).unwrap_or_else(|e| panic!("{e}"));
        let forged = text.replacen(&format!("{:064x}", 20), &format!("{:064x}", 21), 1);
        std::fs::write(&log, forged).unwrap_or_else(|e| panic!("{e}"));
        let refused = read_verified(&log, &public).map(|_| ());
        assert!(
            refused
                .as_ref()
                .is_err_and(|e| e.to_string().contains("checkpoint line 2")),
            "{refused:?}"
        );

        // A crash in the middle of a line: that line is skipped, and dropped at the next start.
        std::fs::write(&log, &text).unwrap_or_else(|e| panic!("{e}"));
        let mut cut = text.clone().into_bytes();
        cut.extend_from_slice(b"{\"seq\": 30, \"ha");
        std::fs::write(&log, &cut).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(read_verified(&log, &public).map(|c| c.len()).ok(), Some(2));
        // Found by the next start.
        let signer = CheckpointSigner::open(&key, &log).unwrap_or_else(|e| panic!("{e}"));
        let end = ChainEnd {
            seq: 40,
            hash: format!("{:064x}", 40),
        };
        signer.append(&end, at).unwrap_or_else(|e| panic!("{e}"));
        let read = read_verified(&log, &public).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(read.iter().map(|c| c.seq).collect::<Vec<_>>(), [10, 20, 40]);

        // A public half left from another key is replaced by the private one's.
        std::fs::write(&public, "left over").unwrap_or_else(|e| panic!("{e}"));
        CheckpointSigner::open(&key, &log).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(read_verified(&log, &public).map(|c| c.len()).ok(), Some(3));
    }
}
