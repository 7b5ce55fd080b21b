//! Bearer tokens: EdDSA JWTs signed with the hub's newest key and naming it (`kid`),
//! carrying the principal.

use std::path::Path;
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use jsonwebtoken::{Algorithm, Header, Validation};
use rand::Rng as _;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;

#[cfg(test)]
use super::keys::KeyId;
use super::keys::{KeyDirectory, KeyRing};
use super::{Principal, Role};
use crate::error::HubError;

const ISSUER: &str = "interop-hub";
/// How far ahead of this machine's clock a token's issue time may be: the clocks of the
/// machine that signed it and of this one differ a little. (Expiry has no leeway.)
pub(super) const START_LEEWAY: time::Duration = time::Duration::seconds(60);

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    iss: String,
    sub: String,
    agency: String,
    member_state: String,
    roles: Vec<String>,
    iat: i64,
    exp: i64,
    /// The token's own id, for revoking it alone.
    jti: String,
}

/// A token's id (its `jti`): what revokes one token and no other.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ToSchema)]
#[serde(try_from = "String", into = "String")]
#[schema(value_type = String, example = "3f0c9a6e2b7d41c8a5e9f0d1c2b3a4e5")]
pub struct TokenId(String);

impl TokenId {
    /// A new random id: 128 bits, as hex.
    fn random() -> Self {
        let mut bytes = [0u8; 16];
        rand::rng().fill_bytes(&mut bytes);
        Self(bytes.iter().map(|b| format!("{b:02x}")).collect())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for TokenId {
    type Error = &'static str;

    fn try_from(text: String) -> Result<Self, Self::Error> {
        if (1..=128).contains(&text.len()) && text.chars().all(|c| c.is_ascii_graphic()) {
            Ok(Self(text))
        } else {
            Err("token_id: 1-128 printable characters without spaces")
        }
    }
}

impl From<TokenId> for String {
    fn from(id: TokenId) -> Self {
        id.0
    }
}

impl std::fmt::Display for TokenId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A token the hub signed and that has not expired: whom it names, and when it was issued
/// and expires (whether the hub admits it for that long is the hub's to decide).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedToken {
    pub principal: Principal,
    pub token_id: TokenId,
    pub issued_at: OffsetDateTime,
    pub expires_at: OffsetDateTime,
}

/// How long a retired key verifies when nothing says otherwise: the longest lifetime any
/// setting admits (366 days), plus the minute a token's issue may lie ahead.
pub const LONGEST_TOKEN_LIFETIME: time::Duration = time::Duration::minutes(366 * 24 * 60 + 1);

/// Signs and checks the hub's tokens with the keys of its key directory, which it reads
/// again whenever the directory changes (a key rotated in or removed by `interop-hub keys`
/// while the hub runs).
pub struct TokenAuthority {
    keys: KeyDirectory,
    retired_keys_verify_for: time::Duration,
    ring: ArcSwap<KeyRing>,
    /// The directory's change time when the ring was read.
    read_at_change: Mutex<Option<std::time::SystemTime>>,
    validation: Validation,
}

impl std::fmt::Debug for TokenAuthority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenAuthority { .. }")
    }
}

impl TokenAuthority {
    /// The keys of `dir`, which gets a first key (readable by the hub's user only) if it
    /// holds none; a retired key verifies for as long as any token can live.
    pub fn load_or_create(dir: &Path) -> anyhow::Result<Self> {
        Self::open(dir, LONGEST_TOKEN_LIFETIME)
    }

    /// As [`Self::load_or_create`]; a retired key verifies `retired_keys_verify_for` after
    /// a newer one took over: as long as the longest-lived token it can have signed.
    pub fn open(dir: &Path, retired_keys_verify_for: time::Duration) -> anyhow::Result<Self> {
        let keys = KeyDirectory::new(dir);
        let now = OffsetDateTime::now_utc();
        keys.ensure_key(now)?;
        let changed_at = keys.changed_at();
        let ring = keys.ring(now, retired_keys_verify_for)?;
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.set_issuer(&[ISSUER]);
        validation.set_required_spec_claims(&["exp", "iss", "sub"]);
        // An expired token is refused at its expiry, not a minute later.
        validation.leeway = 0;
        Ok(Self {
            keys,
            retired_keys_verify_for,
            ring: ArcSwap::from_pointee(ring),
            read_at_change: Mutex::new(changed_at),
            validation,
        })
    }

    /// The key ring, read again first if the directory changed since it was read.
    fn ring(&self) -> Arc<KeyRing> {
        let changed_at = self.keys.changed_at();
        let mut read_at = self
            .read_at_change
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if *read_at != changed_at || changed_at.is_none() {
            match self
                .keys
                .ring(OffsetDateTime::now_utc(), self.retired_keys_verify_for)
            {
                Ok(ring) => {
                    self.ring.store(Arc::new(ring));
                    // A change time is as coarse as the file system's clock: a change within
                    // that tick of this reading would not move it. Until it is safely past,
                    // every request reads the directory again.
                    let settled = changed_at.filter(|at| {
                        at.elapsed()
                            .is_ok_and(|age| age > std::time::Duration::from_secs(2))
                    });
                    *read_at = settled;
                }
                // Half made (a rotation under way): the next request reads it again.
                Err(e) => tracing::warn!(error = %e, "the token keys could not be read again"),
            }
        }
        drop(read_at);
        self.ring.load_full()
    }

    /// A token for `principal`, valid from `now` for `ttl`.
    pub fn mint(
        &self,
        principal: &Principal,
        now: OffsetDateTime,
        ttl: time::Duration,
    ) -> anyhow::Result<String> {
        let claims = Claims {
            iss: ISSUER.to_owned(),
            sub: principal.subject.clone(),
            agency: principal.agency.clone(),
            member_state: principal.member_state.clone(),
            roles: principal
                .roles
                .iter()
                .map(|r| r.as_str().to_owned())
                .collect(),
            iat: now.unix_timestamp(),
            exp: (now + ttl).unix_timestamp(),
            jti: TokenId::random().0,
        };
        let ring = self.ring();
        let (id, key) = ring.signing.as_ref().ok_or_else(|| {
            anyhow::anyhow!(
                "{} holds no private key to sign with (only public ones, to verify)",
                self.keys.path().display()
            )
        })?;
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(id.as_str().to_owned());
        Ok(jsonwebtoken::encode(&header, &claims, key)?)
    }

    /// The principal a token names, if the hub signed it, it has not expired and it was not
    /// issued in the future (a minute's leeway).
    pub fn verify(&self, token: &str) -> Result<VerifiedToken, HubError> {
        use jsonwebtoken::errors::ErrorKind;
        const NOT_OURS: HubError =
            HubError::Unauthenticated("the token was not signed by this hub");
        let header = jsonwebtoken::decode_header(token)
            .map_err(|_| HubError::Unauthenticated("the bearer token is not a valid hub token"))?;
        let ring = self.ring();
        let key = header
            .kid
            .as_deref()
            .and_then(|id| ring.verifying.get(id))
            .ok_or(NOT_OURS)?;
        let data = jsonwebtoken::decode::<Claims>(token, &key.decoding, &self.validation).map_err(
            |e| match e.kind() {
                ErrorKind::ExpiredSignature => HubError::Unauthenticated("the token has expired"),
                ErrorKind::InvalidSignature => {
                    HubError::Unauthenticated("the token was not signed by this hub")
                }
                _ => HubError::Unauthenticated("the bearer token is not a valid hub token"),
            },
        )?;
        let claims = data.claims;
        let at = |seconds: i64| {
            OffsetDateTime::from_unix_timestamp(seconds)
                .map_err(|_| HubError::Unauthenticated("the token names an impossible time"))
        };
        let (issued_at, expires_at) = (at(claims.iat)?, at(claims.exp)?);
        // By the clock the expiry was checked with.
        if issued_at > OffsetDateTime::now_utc() + START_LEEWAY {
            return Err(HubError::Unauthenticated(
                "the token was issued in the future",
            ));
        }
        // A retired key signs nothing new: whoever signs with it holds a key they should not.
        if key
            .retired_at
            .is_some_and(|retired| issued_at > retired + START_LEEWAY)
        {
            return Err(HubError::Unauthenticated(
                "the token was signed with a retired key after its retirement",
            ));
        }
        let roles = claims
            .roles
            .into_iter()
            .map(Role::try_from)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|_| HubError::Unauthenticated("the token names a malformed role"))?;
        let principal = Principal::new(claims.sub, claims.agency, claims.member_state, roles)
            .map_err(|_| HubError::Unauthenticated("the token names a malformed principal"))?;
        let token_id = TokenId::try_from(claims.jti)
            .map_err(|_| HubError::Unauthenticated("the token names a malformed id"))?;
        Ok(VerifiedToken {
            principal,
            token_id,
            issued_at,
            expires_at,
        })
    }
}

/// The member state a token names, read without checking its signature: for a client
/// choosing which of its tokens to send (the importer), never for a decision — the hub
/// checks every token it receives.
pub fn unverified_member_state(token: &str) -> Option<String> {
    jsonwebtoken::dangerous::insecure_decode_claims::<Claims>(token)
        .ok()
        .map(|claims| claims.member_state)
}

/// The id a token carries, read without checking its signature: for showing whoever minted
/// it what to revoke, never for a decision.
pub fn unverified_token_id(token: &str) -> Option<TokenId> {
    jsonwebtoken::dangerous::insecure_decode_claims::<Claims>(token)
        .ok()
        .and_then(|claims| TokenId::try_from(claims.jti).ok())
}

/// `30s`, `15m`, `8h` or `7d`.
pub fn parse_ttl(text: &str) -> Result<time::Duration, String> {
    let error = || format!("expected a duration such as 30m, 8h or 7d, not {text:?}");
    let unit_at = text.len().checked_sub(1).ok_or_else(error)?;
    let (number, unit) = text.split_at(unit_at);
    let number: i64 = number.parse().map_err(|_| error())?;
    let duration = match unit {
        "s" => time::Duration::seconds(number),
        "m" => time::Duration::minutes(number),
        "h" => time::Duration::hours(number),
        "d" => time::Duration::days(number),
        _ => return Err(error()),
    };
    if duration <= time::Duration::ZERO || duration > time::Duration::days(366) {
        return Err(format!("{text}: a token lives from 1s to 366d"));
    }
    Ok(duration)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn principal() -> Principal {
        Principal::new(
            "k.weber",
            "BKA",
            "DE",
            vec!["le_designated".parse().unwrap_or_else(|e| panic!("{e}"))],
        )
        .unwrap_or_else(|e| panic!("{e}"))
    }

    fn authority(dir: &tempfile::TempDir) -> TokenAuthority {
        TokenAuthority::load_or_create(&dir.path().join("keys")).unwrap_or_else(|e| panic!("{e}"))
    }

    fn temp_dir() -> tempfile::TempDir {
        tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn a_token_round_trips_and_forged_or_expired_ones_are_refused() {
        let dir = temp_dir();
        let hub = authority(&dir);
        let now = OffsetDateTime::now_utc();
        let token = hub
            .mint(&principal(), now, time::Duration::hours(1))
            .unwrap_or_else(|e| panic!("{e}"));
        let verified = hub.verify(&token).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(verified.principal, principal());
        assert_eq!(unverified_token_id(&token), Some(verified.token_id.clone()));
        let again = hub
            .mint(&principal(), now, time::Duration::hours(1))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_ne!(
            hub.verify(&again).map(|v| v.token_id).ok(),
            Some(verified.token_id.clone()),
            "every token has an id of its own"
        );
        assert_eq!(
            verified.expires_at - verified.issued_at,
            time::Duration::hours(1)
        );

        let elsewhere = temp_dir();
        let other = authority(&elsewhere);
        assert!(matches!(
            other.verify(&token),
            Err(HubError::Unauthenticated(_))
        ));
        let expired = hub
            .mint(
                &principal(),
                now - time::Duration::hours(2),
                time::Duration::hours(1),
            )
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(matches!(
            hub.verify(&expired),
            Err(HubError::Unauthenticated("the token has expired"))
        ));
        assert!(hub.verify("not.a.token").is_err());
        assert_eq!(parse_ttl("8h"), Ok(time::Duration::hours(8)));
        assert!(parse_ttl("8").is_err());
        assert!(parse_ttl("0m").is_err());
    }

    #[test]
    fn a_rotated_out_key_verifies_what_it_signed_and_a_removed_one_nothing() {
        let dir = temp_dir();
        let keys = KeyDirectory::new(&dir.path().join("keys"));
        let now = OffsetDateTime::now_utc();
        let minutes = time::Duration::minutes;
        // The first key made twenty minutes ago, retired ten minutes ago.
        keys.ensure_key(now - minutes(20))
            .unwrap_or_else(|e| panic!("{e}"));
        let hub = authority(&dir);
        let mint_at = |authority: &TokenAuthority, at: OffsetDateTime| {
            authority
                .mint(&principal(), at, time::Duration::hours(1))
                .unwrap_or_else(|e| panic!("{e}"))
        };
        let mint = |authority: &TokenAuthority| mint_at(authority, now);
        let kid = |token: &str| {
            jsonwebtoken::decode_header(token)
                .ok()
                .and_then(|header| header.kid)
                .unwrap_or_default()
        };
        let before = mint_at(&hub, now - minutes(15));
        // Copies of the first key elsewhere: a signer that missed the rotation.
        let stale = temp_dir();
        std::fs::create_dir(stale.path().join("keys")).unwrap_or_else(|e| panic!("{e}"));
        for entry in std::fs::read_dir(dir.path().join("keys")).unwrap_or_else(|e| panic!("{e}")) {
            let path = entry.unwrap_or_else(|e| panic!("{e}")).path();
            if path.to_string_lossy().ends_with(".pem") {
                let name = path.file_name().unwrap_or_default();
                std::fs::copy(&path, stale.path().join("keys").join(name))
                    .unwrap_or_else(|e| panic!("{e}"));
            }
        }

        let new = keys
            .rotate(now - minutes(10), LONGEST_TOKEN_LIFETIME)
            .unwrap_or_else(|e| panic!("{e}"));
        let after = mint(&hub);
        assert_eq!(kid(&after), new.as_str(), "the newest key signs");
        assert_ne!(kid(&before), kid(&after));
        assert!(
            hub.verify(&before).is_ok(),
            "the retired key still verifies"
        );
        assert!(hub.verify(&after).is_ok());
        let late = mint(&authority(&stale));
        assert_eq!(kid(&late), kid(&before));
        assert!(matches!(
            hub.verify(&late),
            Err(HubError::Unauthenticated(
                "the token was signed with a retired key after its retirement"
            ))
        ));

        let retired = KeyId::parse(&kid(&before)).unwrap_or_else(|| panic!("a key id"));
        keys.remove(&retired).unwrap_or_else(|e| panic!("{e}"));
        assert!(matches!(
            hub.verify(&before),
            Err(HubError::Unauthenticated(
                "the token was not signed by this hub"
            ))
        ));
        assert!(hub.verify(&after).is_ok());
    }
}
