//! The token signing keys: a directory of Ed25519 keys, each named by its id. The newest
//! private key signs; an older key verifies the tokens it signed before it was retired until
//! they have all expired; a removed key verifies nothing. A hub that only verifies holds the
//! public halves alone.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use ed25519_dalek::SigningKey;
use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
use ed25519_dalek::pkcs8::{
    DecodePrivateKey as _, DecodePublicKey as _, EncodePrivateKey as _, EncodePublicKey as _,
};
use jsonwebtoken::{DecodingKey, EncodingKey};
use rand::Rng as _;
use time::OffsetDateTime;
use time::macros::format_description;

const PRIVATE_SUFFIX: &str = ".key.pem";
const PUBLIC_SUFFIX: &str = ".pub.pem";
/// What `keys remove` leaves of a key: its id, which still retires the key before it, so
/// that removing a key never gives the one before it a longer life or the signing back.
const REMOVED_SUFFIX: &str = ".removed";
const LOCK_FILE: &str = ".lock";
const KEY_ID_TIME: &[time::format_description::BorrowedFormatItem<'static>] =
    format_description!("[year][month][day]T[hour][minute][second]Z");

/// A key's id, the `kid` of the tokens it signs: its creation time (UTC, to the second) and
/// four random hex digits, so that ids sort by age.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyId(String);

impl KeyId {
    fn new(now: OffsetDateTime) -> anyhow::Result<Self> {
        let mut tail = [0u8; 2];
        rand::rng().fill_bytes(&mut tail);
        let at = now.to_offset(time::UtcOffset::UTC).format(KEY_ID_TIME)?;
        Ok(Self(format!("{at}-{:02x}{:02x}", tail[0], tail[1])))
    }

    pub fn parse(text: &str) -> Option<Self> {
        let (at, tail) = text.split_once('-')?;
        let well_formed = tail.len() == 4
            && tail.chars().all(|c| c.is_ascii_hexdigit())
            && time::PrimitiveDateTime::parse(at, KEY_ID_TIME).is_ok();
        well_formed.then(|| Self(text.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    fn created_at(&self) -> OffsetDateTime {
        self.0
            .split_once('-')
            .and_then(|(at, _)| time::PrimitiveDateTime::parse(at, KEY_ID_TIME).ok())
            .map_or(
                OffsetDateTime::UNIX_EPOCH,
                time::PrimitiveDateTime::assume_utc,
            )
    }
}

impl std::fmt::Display for KeyId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// One key as the directory holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyState {
    pub id: KeyId,
    /// The private half is here: this key can sign.
    pub private: bool,
    /// Signs new tokens: the newest key.
    pub signing: bool,
    /// Withdrawn by `keys remove`: verifies nothing.
    pub removed: bool,
    /// When a newer key took over; `None` for the newest.
    pub retired_at: Option<OffsetDateTime>,
    /// Past this instant it verifies nothing: every token it signed has expired.
    pub verifies_until: Option<OffsetDateTime>,
}

/// The directory of signing keys.
#[derive(Debug, Clone)]
pub struct KeyDirectory {
    dir: PathBuf,
}

impl KeyDirectory {
    pub fn new(dir: &Path) -> Self {
        Self {
            dir: dir.to_owned(),
        }
    }

    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// Creates the directory (the hub's user's alone) and a first key, unless it holds a key
    /// (or a removed one's id: then `keys rotate` makes the next). A directory with keys is
    /// only read: a hub that verifies may have it read-only.
    pub fn ensure_key(&self, now: OffsetDateTime) -> anyhow::Result<()> {
        if !self.ids()?.is_empty() {
            return Ok(());
        }
        let _lock = self.lock()?;
        if self.ids()?.is_empty() {
            self.write_new_key(now)?;
        }
        Ok(())
    }

    /// Makes a new key, which signs from now on; the one it replaces verifies until the
    /// tokens it signed have expired (`retired_keys_verify_for` after now). Keys past that
    /// are deleted.
    pub fn rotate(
        &self,
        now: OffsetDateTime,
        retired_keys_verify_for: time::Duration,
    ) -> anyhow::Result<KeyId> {
        let _lock = self.lock()?;
        for state in self.states(retired_keys_verify_for)? {
            if state.verifies_until.is_some_and(|until| until <= now) {
                self.delete(&state.id)?;
                // Past its window a removed key retires nothing that still verifies.
                let _ = std::fs::remove_file(self.removed_path(&state.id));
            }
        }
        self.write_new_key(now)
    }

    /// Withdraws a key: tokens it signed are refused from the next request on. Its id stays
    /// (a `.removed` file), still retiring the key before it; a removed newest key leaves
    /// nothing to sign with until `rotate`.
    pub fn remove(&self, id: &KeyId) -> anyhow::Result<()> {
        let _lock = self.lock()?;
        anyhow::ensure!(
            self.public_path(id).exists(),
            "no key {id} in {} (or removed already)",
            self.dir.display()
        );
        crate::data_dir::write_new_owner_only(&self.removed_path(id), b"")?;
        self.delete(id)
    }

    /// Every key, oldest first.
    pub fn states(&self, retired_keys_verify_for: time::Duration) -> anyhow::Result<Vec<KeyState>> {
        let ids = self.ids()?;
        Ok(ids
            .iter()
            .enumerate()
            .map(|(i, id)| {
                let retired_at = ids.get(i + 1).map(KeyId::created_at);
                let removed = self.removed_path(id).exists();
                let private = !removed && self.private_path(id).exists();
                KeyState {
                    id: id.clone(),
                    private,
                    signing: i + 1 == ids.len() && private,
                    removed,
                    retired_at,
                    verifies_until: retired_at.map(|at| at + retired_keys_verify_for),
                }
            })
            .collect())
    }

    /// The keys in force at `now`: the signing key, if this directory holds the newest
    /// key's private half, and every key that still verifies.
    pub(super) fn ring(
        &self,
        now: OffsetDateTime,
        retired_keys_verify_for: time::Duration,
    ) -> anyhow::Result<KeyRing> {
        let mut ring = KeyRing::default();
        for state in self.states(retired_keys_verify_for)? {
            if state.removed || state.verifies_until.is_some_and(|until| until <= now) {
                continue;
            }
            // A key that cannot be read verifies nothing (and the others still do): an
            // unreadable directory never keeps a withdrawn key in force.
            match self.read_key(&state) {
                Ok((decoding, encoding)) => {
                    if let Some(encoding) = encoding {
                        ring.signing = Some((state.id.clone(), encoding));
                    }
                    ring.verifying.insert(
                        state.id.as_str().to_owned(),
                        VerifyingKey {
                            decoding,
                            retired_at: state.retired_at,
                        },
                    );
                }
                Err(e) => tracing::warn!(key = %state.id, error = %e, "a token key cannot be read"),
            }
        }
        Ok(ring)
    }

    /// A key's verifying half, and its signing half if it signs.
    fn read_key(&self, state: &KeyState) -> anyhow::Result<(DecodingKey, Option<EncodingKey>)> {
        let public = read_key_file(&self.public_path(&state.id))?;
        let public = ed25519_dalek::VerifyingKey::from_public_key_pem(&public)
            .map_err(|e| anyhow::anyhow!("not an Ed25519 public key: {e}"))?;
        let encoding = if state.signing {
            let private = read_key_file(&self.private_path(&state.id))?;
            let private = SigningKey::from_pkcs8_pem(&private)
                .and_then(|key| key.to_pkcs8_der())
                .map_err(|e| anyhow::anyhow!("not an Ed25519 private key: {e}"))?;
            Some(EncodingKey::from_ed_der(private.as_bytes()))
        } else {
            None
        };
        Ok((DecodingKey::from_ed_der(public.as_bytes()), encoding))
    }

    /// When the directory's list of files last changed: keys are only ever added or deleted
    /// whole, never rewritten.
    pub(super) fn changed_at(&self) -> Option<std::time::SystemTime> {
        std::fs::metadata(&self.dir).and_then(|m| m.modified()).ok()
    }

    fn ids(&self) -> anyhow::Result<Vec<KeyId>> {
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => anyhow::bail!("cannot read the key directory {}: {e}", self.dir.display()),
        };
        let mut ids = Vec::new();
        for entry in entries {
            let name = entry?.file_name();
            let name = name.to_string_lossy();
            let id = name
                .strip_suffix(PUBLIC_SUFFIX)
                .or_else(|| name.strip_suffix(REMOVED_SUFFIX))
                .and_then(KeyId::parse);
            ids.extend(id);
        }
        ids.sort();
        ids.dedup();
        Ok(ids)
    }

    fn private_path(&self, id: &KeyId) -> PathBuf {
        self.dir.join(format!("{id}{PRIVATE_SUFFIX}"))
    }

    fn public_path(&self, id: &KeyId) -> PathBuf {
        self.dir.join(format!("{id}{PUBLIC_SUFFIX}"))
    }

    fn removed_path(&self, id: &KeyId) -> PathBuf {
        self.dir.join(format!("{id}{REMOVED_SUFFIX}"))
    }

    /// Held while the directory changes: hubs starting together make one first key.
    fn lock(&self) -> anyhow::Result<std::fs::File> {
        crate::data_dir::create(&self.dir)?;
        let mut options = std::fs::OpenOptions::new();
        options.create(true).truncate(false).write(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let file = options.open(self.dir.join(LOCK_FILE))?;
        file.lock()?;
        Ok(file)
    }

    /// Writes the private half, then the public one, which makes the key count. The new id
    /// sorts after every other, whatever the clock did since they were made.
    fn write_new_key(&self, now: OffsetDateTime) -> anyhow::Result<KeyId> {
        let newest = self.ids()?.last().map(KeyId::created_at);
        let at = newest.map_or(now, |newest| now.max(newest + time::Duration::seconds(1)));
        let id = KeyId::new(at)?;
        let (private, public) = new_ed25519_pem()?;
        crate::data_dir::write_new_owner_only(&self.private_path(&id), private.as_bytes())?;
        crate::data_dir::write_new_owner_only(&self.public_path(&id), public.as_bytes())?;
        Ok(id)
    }

    /// Deletes what is left of a key: an expired one's files, or a removed one's halves
    /// (its `.removed` file, written first, keeps its id).
    fn delete(&self, id: &KeyId) -> anyhow::Result<()> {
        for path in [self.public_path(id), self.private_path(id)] {
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => anyhow::bail!("cannot delete {}: {e}", path.display()),
            }
        }
        Ok(())
    }
}

/// A new random Ed25519 key: its private half (PKCS#8 PEM) and its public half (SPKI PEM).
pub(crate) fn new_ed25519_pem() -> anyhow::Result<(
    ed25519_dalek::pkcs8::spki::der::zeroize::Zeroizing<String>,
    String,
)> {
    let mut seed = [0u8; 32];
    rand::rng().fill_bytes(&mut seed);
    let key = SigningKey::from_bytes(&seed);
    let private = key
        .to_pkcs8_pem(LineEnding::LF)
        .map_err(|e| anyhow::anyhow!("cannot encode a new key: {e}"))?;
    let public = key
        .verifying_key()
        .to_public_key_pem(LineEnding::LF)
        .map_err(|e| anyhow::anyhow!("cannot encode a new key: {e}"))?;
    Ok((private, public))
}

/// A verifying key and when it was retired.
pub(super) struct VerifyingKey {
    pub(super) decoding: DecodingKey,
    pub(super) retired_at: Option<OffsetDateTime>,
}

/// The keys one reading of the directory found in force.
#[derive(Default)]
pub(super) struct KeyRing {
    pub(super) signing: Option<(KeyId, EncodingKey)>,
    /// By key id.
    pub(super) verifying: HashMap<String, VerifyingKey>,
}

fn read_key_file(path: &Path) -> anyhow::Result<String> {
    std::fs::read_to_string(path)
        .map_err(|e| anyhow::anyhow!("cannot read the key {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_rotate_retire_expire_and_are_removed() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let keys = KeyDirectory::new(&dir.path().join("token-keys"));
        let start =
            OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap_or_else(|e| panic!("{e}"));
        let day = time::Duration::days(1);
        keys.ensure_key(start).unwrap_or_else(|e| panic!("{e}"));
        keys.ensure_key(start).unwrap_or_else(|e| panic!("{e}"));
        let first = keys.states(day).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(first.len(), 1, "one first key, however often ensured");
        assert!(first[0].signing && first[0].private);

        let later = start + time::Duration::hours(1);
        let second = keys.rotate(later, day).unwrap_or_else(|e| panic!("{e}"));
        let states = keys.states(day).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(states.len(), 2);
        assert_eq!(states[1].id, second);
        assert!(states[1].signing && !states[0].signing);
        assert_eq!(states[0].retired_at, Some(second.created_at()));
        let ring = keys.ring(later, day).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(ring.verifying.len(), 2);
        assert_eq!(ring.signing.as_ref().map(|(id, _)| id), Some(&second));
        // A day after its retirement the first key verifies nothing, and the next rotation
        // deletes it.
        let past = later + day + time::Duration::seconds(1);
        assert_eq!(
            keys.ring(past, day)
                .unwrap_or_else(|e| panic!("{e}"))
                .verifying
                .len(),
            1
        );
        let third = keys.rotate(past, day).unwrap_or_else(|e| panic!("{e}"));
        let ids: Vec<KeyId> = keys
            .states(day)
            .unwrap_or_else(|e| panic!("{e}"))
            .into_iter()
            .map(|s| s.id)
            .collect();
        assert_eq!(ids, vec![second.clone(), third.clone()]);

        let behind = keys.rotate(start, day).unwrap_or_else(|e| panic!("{e}"));
        assert!(
            behind > third,
            "a clock set back still makes the newest key"
        );
        keys.remove(&behind).unwrap_or_else(|e| panic!("{e}"));

        keys.remove(&second).unwrap_or_else(|e| panic!("{e}"));
        assert!(keys.remove(&second).is_err(), "gone already");
        let ring = keys.ring(past, day).unwrap_or_else(|e| panic!("{e}"));
        assert!(!ring.verifying.contains_key(second.as_str()));

        // Removing the newest key gives the one before it neither the signing nor a longer
        // life: the removed id still retires it.
        let fourth = keys.rotate(past, day).unwrap_or_else(|e| panic!("{e}"));
        keys.remove(&fourth).unwrap_or_else(|e| panic!("{e}"));
        let ring = keys.ring(past, day).unwrap_or_else(|e| panic!("{e}"));
        assert!(ring.signing.is_none(), "nothing signs until a rotation");
        assert_eq!(
            ring.verifying
                .get(third.as_str())
                .and_then(|key| key.retired_at),
            Some(behind.created_at()),
            "retired by the next id, removed or not"
        );
        assert!(fourth > behind);
        let fifth = keys.rotate(past, day).unwrap_or_else(|e| panic!("{e}"));
        let ring = keys.ring(past, day).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(ring.signing.as_ref().map(|(id, _)| id), Some(&fifth));

        // The public half alone: verifies, signs nothing.
        std::fs::remove_file(keys.private_path(&fifth)).unwrap_or_else(|e| panic!("{e}"));
        let ring = keys.ring(past, day).unwrap_or_else(|e| panic!("{e}"));
        assert!(ring.signing.is_none());
        assert!(ring.verifying.contains_key(fifth.as_str()));
        // A key that cannot be read verifies nothing; the others still do.
        std::fs::write(keys.public_path(&third), "not a key").unwrap_or_else(|e| panic!("{e}"));
        let ring = keys.ring(past, day).unwrap_or_else(|e| panic!("{e}"));
        assert!(!ring.verifying.contains_key(third.as_str()));
        assert!(ring.verifying.contains_key(fifth.as_str()));
        assert!(KeyId::parse("20260101T000000Z-00ff").is_some());
        assert!(KeyId::parse("../etc-0000").is_none());
    }
}
