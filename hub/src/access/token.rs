//! Bearer tokens: HS256 JWTs signed with the hub's key, carrying the principal.

use std::io::Write as _;
use std::path::Path;

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use rand::Rng as _;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;

use super::{Principal, Role};
use crate::error::HubError;

const ISSUER: &str = "interop-hub";
/// How far ahead of this machine's clock a token's issue time may be: the clocks of the
/// machine that signed it and of this one differ a little. (Expiry has no leeway.)
const START_LEEWAY: time::Duration = time::Duration::seconds(60);
const KEY_BYTES: usize = 32;

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

/// Signs and checks the hub's tokens.
pub struct TokenAuthority {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
}

impl std::fmt::Debug for TokenAuthority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenAuthority { .. }")
    }
}

impl TokenAuthority {
    /// Reads the signing key at `path` (hex), creating it on first run — readable by the
    /// hub's user only.
    pub fn load_or_create(path: &Path) -> anyhow::Result<Self> {
        if !path.exists() {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            let mut key = [0u8; KEY_BYTES];
            rand::rng().fill_bytes(&mut key);
            let hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
            // Written whole under a name of this process's own, then linked into place: a
            // process starting beside this one (replicas sharing the key) never reads a key
            // half written, and the first link wins.
            let draft = path.with_extension(format!("draft-{}", std::process::id()));
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create(true).truncate(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
            let written = options.open(&draft).and_then(|mut file| {
                file.write_all(hex.as_bytes())?;
                file.sync_all()
            });
            let linked = written.and_then(|()| std::fs::hard_link(&draft, path));
            let _ = std::fs::remove_file(&draft);
            match linked {
                Ok(()) => {}
                // Another process made it first: use theirs.
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => anyhow::bail!("cannot create the signing key {}: {e}", path.display()),
            }
        }
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("cannot read the signing key {}: {e}", path.display()))?;
        let key = decode_hex(text.trim())
            .filter(|k| k.len() >= KEY_BYTES)
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "the signing key {} must hold at least {KEY_BYTES} bytes as hex",
                    path.display()
                )
            })?;
        Ok(Self::from_secret(&key))
    }

    pub fn from_secret(secret: &[u8]) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&[ISSUER]);
        validation.set_required_spec_claims(&["exp", "iss", "sub"]);
        // An expired token is refused at its expiry, not a minute later.
        validation.leeway = 0;
        Self {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
        }
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
        Ok(jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &self.encoding,
        )?)
    }

    /// The principal a token names, if the hub signed it, it has not expired and it was not
    /// issued in the future (a minute's leeway).
    pub fn verify(&self, token: &str) -> Result<VerifiedToken, HubError> {
        use jsonwebtoken::errors::ErrorKind;
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map_err(|e| match e.kind() {
                ErrorKind::ExpiredSignature => HubError::Unauthenticated("the token has expired"),
                ErrorKind::InvalidSignature => {
                    HubError::Unauthenticated("the token was not signed by this hub")
                }
                _ => HubError::Unauthenticated("the bearer token is not a valid hub token"),
            })?;
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

fn decode_hex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
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

    #[test]
    fn a_token_round_trips_and_forged_or_expired_ones_are_refused() {
        let hub = TokenAuthority::from_secret(&[7; 32]);
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

        let other = TokenAuthority::from_secret(&[8; 32]);
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
}
