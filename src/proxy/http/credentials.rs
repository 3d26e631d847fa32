//! The credentials the gateway accepts, replaced whole when its config reloads (SIGHUP or a
//! file change): `[[gateway.api_key]]`, `[[gateway.client_cert]]`, `[gateway.jwt]` (its key
//! files read again) and `gateway.allow_anonymous`. A key removed from the file is refused
//! from the next request on, without a restart that would end every session; each request
//! is authenticated again, so a session opened with a revoked key cannot be used either.
//!
//! What changed is recorded with the reload (see [`PolicyChanges`]): keys and certificates
//! by the first hex digits of their SHA-256 and by count, never by user name, so that
//! `erase --user` leaves no trace of a user in reload events.

use std::sync::{Arc, RwLock};

use crate::config::{ApiKey, GatewayConfig, JwtSettings};
use crate::policy::PolicyChanges;
#[cfg(test)]
use sha2::Digest;

/// The credentials in force; cheap to read once per request.
pub(crate) struct Credentials(RwLock<Arc<GatewayConfig>>);

impl Credentials {
    pub(crate) fn new(config: &GatewayConfig) -> Credentials {
        Credentials(RwLock::new(Arc::new(config.clone())))
    }

    /// The gateway config whose credentials are in force (its other keys are the ones the
    /// gateway started with: they need a restart).
    pub(crate) fn current(&self) -> Arc<GatewayConfig> {
        self.0.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Puts `new`'s credentials in force and says what changed; `Err` (nothing applied) when
    /// `new` has none at all, which the gateway would refuse to start with: a save that lost
    /// the `[gateway]` keys must not lock every client out.
    pub(crate) fn replace(&self, new: &GatewayConfig) -> Result<PolicyChanges, String> {
        if new.api_keys.is_empty()
            && new.client_certs.is_empty()
            && new.jwt.is_none()
            && !new.allow_anonymous
        {
            return Err("the config has no credential at all (no [[gateway.api_key]], [[gateway.client_cert]] or [gateway.jwt], and allow_anonymous is off): the gateway would not start with it; the running policy and credentials stay".into());
        }
        let mut cell = self.0.write().unwrap_or_else(|p| p.into_inner());
        let old = cell.clone();
        let changes = changes(&old, new);
        *cell = Arc::new(GatewayConfig {
            api_keys: new.api_keys.clone(),
            client_certs: new.client_certs.clone(),
            jwt: new.jwt.clone(),
            allow_anonymous: new.allow_anonymous,
            ..(*old).clone()
        });
        Ok(changes)
    }
}

/// The `[gateway]` keys [`Credentials::replace`] applies on a reload.
pub(crate) const RELOADED_KEYS: [&str; 4] = ["api_key", "client_cert", "jwt", "allow_anonymous"];

/// What changed from `old`'s credentials to `new`'s. Any change is a permission change;
/// one that lets in whom the old config did not (a key, a certificate or an issuer added,
/// anonymous access on, an algorithm accepted, more clock leeway) may weaken enforcement.
fn changes(old: &GatewayConfig, new: &GatewayConfig) -> PolicyChanges {
    let mut out = PolicyChanges::default();
    listed("api_key", &old.api_keys, &new.api_keys, &mut out);
    listed(
        "client_cert",
        &old.client_certs,
        &new.client_certs,
        &mut out,
    );
    jwt(old.jwt.as_deref(), new.jwt.as_deref(), &mut out);
    if old.allow_anonymous != new.allow_anonymous {
        let line = format!(
            "gateway.allow_anonymous: {} -> {}",
            old.allow_anonymous, new.allow_anonymous
        );
        if new.allow_anonymous {
            out.weakened.push(
                "gateway.allow_anonymous on: requests without a credential are served".into(),
            );
        }
        out.lines.push(line);
    }
    out.permissions = !out.lines.is_empty();
    out
}

/// Keys or certificates added, removed or given other roles or another user, by hash.
fn listed(what: &str, old: &[ApiKey], new: &[ApiKey], out: &mut PolicyChanges) {
    let short =
        |k: &ApiKey| -> String { k.sha256[..6].iter().map(|b| format!("{b:02x}")).collect() };
    let find = |list: &[ApiKey], k: &ApiKey| list.iter().find(|o| o.sha256 == k.sha256).cloned();
    let mut removed = Vec::new();
    for k in old {
        match find(new, k) {
            None => removed.push(short(k)),
            Some(n) if n.user_id != k.user_id || n.roles != k.roles => {
                out.lines.push(format!(
                    "gateway.{what} {} changed: user {}, roles {} -> {}",
                    short(k),
                    if n.user_id == k.user_id {
                        "kept"
                    } else {
                        "changed"
                    },
                    k.roles.len(),
                    n.roles.len()
                ));
                if n.user_id != k.user_id || n.roles.iter().any(|r| !k.roles.contains(r)) {
                    out.weakened.push(format!(
                        "gateway.{what} {} acts as another user or with more roles",
                        short(k)
                    ));
                }
            }
            Some(_) => {}
        }
    }
    let added: Vec<String> = new
        .iter()
        .filter(|k| find(old, k).is_none())
        .map(short)
        .collect();
    if !removed.is_empty() {
        out.lines.push(format!(
            "gateway.{what} removed: {} (sha256 {}…): refused from now on",
            removed.len(),
            removed.join("…, ")
        ));
    }
    if !added.is_empty() {
        out.lines.push(format!(
            "gateway.{what} added: {} (sha256 {}…)",
            added.len(),
            added.join("…, ")
        ));
        out.weakened
            .push(format!("gateway.{what} added: {}", added.len()));
    }
}

/// How a JWT setting is written in a reload event.
type Shown = fn(&JwtSettings) -> String;

fn jwt(old: Option<&JwtSettings>, new: Option<&JwtSettings>, out: &mut PolicyChanges) {
    match (old, new) {
        (None, None) => {}
        (None, Some(n)) => {
            out.lines
                .push(format!("gateway.jwt added: issuer {:?}", n.issuer));
            out.weakened.push(format!(
                "gateway.jwt added: tokens of {:?} are accepted",
                n.issuer
            ));
        }
        (Some(o), None) => out
            .lines
            .push(format!("gateway.jwt removed: issuer {:?}", o.issuer)),
        (Some(o), Some(n)) => {
            let keys = |j: &JwtSettings| -> String {
                let kids: Vec<&str> = j.keys.iter().filter_map(|(k, _)| k.as_deref()).collect();
                let digest: String = j.key_digest[..6]
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect();
                format!("{} (kid {kids:?}, sha256 {digest}…)", j.keys.len())
            };
            let fields: [(&str, Shown); 7] = [
                ("issuer", |j| format!("{:?}", j.issuer)),
                ("audience", |j| format!("{:?}", j.audience)),
                ("algorithms", |j| format!("{:?}", j.algorithms)),
                ("leeway_s", |j| j.leeway_s.to_string()),
                ("user_claim", |j| format!("{:?}", j.user_claim)),
                ("roles_claim", |j| format!("{:?}", j.roles_claim)),
                ("keys", keys),
            ];
            for (what, shown) in fields {
                let (a, b) = (shown(o), shown(n));
                if a != b {
                    out.lines.push(format!("gateway.jwt.{what}: {a} -> {b}"));
                }
            }
            if o.key_digest != n.key_digest {
                out.weakened.push(
                    "gateway.jwt keys replaced or added: tokens they sign are accepted".into(),
                );
            }
            if o.issuer != n.issuer
                || o.audience != n.audience
                || o.user_claim != n.user_claim
                || o.roles_claim != n.roles_claim
            {
                out.weakened
                    .push("gateway.jwt: another issuer, audience, user or roles claim".into());
            }
            if n.algorithms.iter().any(|a| !o.algorithms.contains(a)) {
                out.weakened
                    .push("gateway.jwt.algorithms: one more accepted".into());
            }
            if n.leeway_s > o.leeway_s {
                out.weakened.push(format!(
                    "gateway.jwt.leeway_s raised {} -> {}: expired tokens pass longer",
                    o.leeway_s, n.leeway_s
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(byte: u8, user: &str, roles: &[&str]) -> ApiKey {
        ApiKey {
            user_id: user.into(),
            sha256: [byte; 32],
            roles: roles.iter().map(|r| r.to_string()).collect(),
        }
    }

    #[test]
    fn a_removed_key_is_refused_at_once_and_named_by_hash_not_user() {
        let start = GatewayConfig {
            api_keys: vec![key(1, "alice", &[]), key(2, "bob", &["ops"])],
            ..GatewayConfig::default()
        };
        let cell = Credentials::new(&start);
        let next = GatewayConfig {
            api_keys: vec![key(1, "alice", &[])],
            listen: "127.0.0.1:9".parse().unwrap(),
            ..GatewayConfig::default()
        };
        let c = cell.replace(&next).unwrap();
        assert!(c.permissions);
        assert!(c.weakened.is_empty(), "{:?}", c.weakened);
        assert_eq!(
            c.lines,
            ["gateway.api_key removed: 1 (sha256 020202020202…): refused from now on"]
        );
        let now = cell.current();
        assert_eq!(now.api_keys.len(), 1);
        // Only credentials reload: the address is the one the gateway started with.
        assert_eq!(now.listen, start.listen);
    }

    #[test]
    fn keys_added_roles_widened_and_anonymous_access_may_weaken() {
        let start = GatewayConfig {
            api_keys: vec![key(1, "alice", &[])],
            ..GatewayConfig::default()
        };
        let cell = Credentials::new(&start);
        let c = cell
            .replace(&GatewayConfig {
                api_keys: vec![key(1, "alice", &["admin"]), key(3, "carol", &[])],
                allow_anonymous: true,
                ..GatewayConfig::default()
            })
            .unwrap();
        assert_eq!(c.weakened.len(), 3, "{:?}", c.weakened);
        assert!(
            c.lines
                .iter()
                .any(|l| l == "gateway.allow_anonymous: false -> true")
        );
        // Unchanged credentials: nothing to say.
        let same = cell.current();
        assert!(cell.replace(&same).unwrap().lines.is_empty());
        // None left: refused, and the running credentials stay.
        let none = cell.replace(&GatewayConfig::default());
        assert!(none.unwrap_err().contains("no credential at all"));
        assert_eq!(cell.current().api_keys.len(), 2);
    }

    /// Found in review: a JWT key swapped in its file (`key_file` and `secret_file` keys have
    /// no `kid`) changed nothing the reload event said, and was applied unrecorded.
    #[test]
    fn a_jwt_key_swapped_under_the_same_kid_is_seen_and_may_weaken() {
        let jwt = |secret: &[u8]| {
            Some(Arc::new(JwtSettings {
                issuer: "https://idp.example.com".into(),
                audience: "gw".into(),
                algorithms: vec![jsonwebtoken::Algorithm::HS256],
                keys: vec![(None, jsonwebtoken::DecodingKey::from_secret(secret))],
                key_digest: sha2::Sha256::digest(secret).into(),
                leeway_s: 60,
                user_claim: "sub".into(),
                roles_claim: None,
            }))
        };
        let start = GatewayConfig {
            jwt: jwt(b"first secret of at least 32 bytes!"),
            ..GatewayConfig::default()
        };
        let cell = Credentials::new(&start);
        let same = cell.replace(&start).unwrap();
        assert!(same.lines.is_empty(), "{:?}", same.lines);
        let swapped = cell
            .replace(&GatewayConfig {
                jwt: jwt(b"other secret of at least 32 bytes!"),
                ..GatewayConfig::default()
            })
            .unwrap();
        assert!(
            swapped
                .lines
                .iter()
                .any(|l| l.starts_with("gateway.jwt.keys:")),
            "{:?}",
            swapped.lines
        );
        assert!(swapped.weakened.iter().any(|w| w.contains("keys replaced")));
    }
}
