//! Basic auth, response headers and rate limiting from the web configuration, as axum middleware
//! reading the live (reloadable) settings.
//!
//! Passwords are checked with bcrypt, which is slow on purpose, so three things keep it in hand:
//! an unknown user is checked against a dummy hash of the same cost as the real ones (the answer
//! takes as long as for a wrong password, so timing does not reveal which users exist); a
//! successful check is remembered, keyed by a SHA-256 of user, password and stored hash, so 64
//! concurrent scrapes with the same credentials cost one bcrypt run; and bcrypt runs on blocking
//! threads, at most [`BCRYPT_AT_ONCE`] at a time, never on the two async workers.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::http::{header, HeaderName, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use sha2::{Digest, Sha256};
use tokio::sync::Semaphore;

use crate::input::ConfigError;

/// bcrypt checks running at once; more requests wait (within the request timeout).
pub const BCRYPT_AT_ONCE: usize = 2;
/// Remembered successful checks; the set is emptied when it fills.
const CACHE_CAPACITY: usize = 1024;
/// The endpoints `vram_exporter.unauthenticated_health` opens.
const HEALTH_PATHS: &[&str] = &["/-/healthy", "/-/ready"];

/// The highest bcrypt cost accepted. Each step doubles the work: cost 17 is about 10 s of CPU per
/// check on a server core, and the dummy hash for unknown users is made at the file's highest cost
/// when the file is loaded, so a higher cost would stall startup or reload.
pub const MAX_BCRYPT_COST: u32 = 16;

/// `rate_limit`: one token every `interval`, at most `burst` saved up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    pub interval: Duration,
    pub burst: u32,
}

/// Who may in and what every response carries: the validated non-TLS part of a web configuration.
pub struct Access {
    users: HashMap<String, String>,
    /// Checked for unknown users so they take as long as known ones.
    dummy_hash: String,
    headers: Vec<(HeaderName, HeaderValue)>,
    rate: Option<RateLimit>,
    health_open: bool,
}

impl Access {
    /// Checks every hash; `users` maps user names to bcrypt hashes.
    pub fn new(
        users: BTreeMap<String, String>,
        headers: Vec<(HeaderName, HeaderValue)>,
        rate: Option<RateLimit>,
        health_open: bool,
    ) -> Result<Access, ConfigError> {
        let mut max_cost = 4;
        for (user, hash) in &users {
            let key = format!("basic_auth_users.{user}");
            if user.contains(':') {
                return Err(ConfigError::invalid(
                    key,
                    user,
                    "a user name cannot contain ':' (basic auth splits on it)",
                ));
            }
            let prefix_ok = ["$2a$", "$2b$", "$2y$"].iter().any(|p| hash.starts_with(p));
            let parts = hash.parse::<bcrypt::HashParts>();
            match parts {
                Ok(parts) if prefix_ok && parts.get_cost() > MAX_BCRYPT_COST => {
                    return Err(ConfigError::invalid(
                        key,
                        format_args!("(hidden, cost {})", parts.get_cost()),
                        format!(
                            "bcrypt cost above {MAX_BCRYPT_COST} makes every check take seconds to hours; \
                             re-hash with a cost of 10 to 12"
                        ),
                    ))
                }
                Ok(parts) if prefix_ok => max_cost = max_cost.max(parts.get_cost()),
                Ok(_) => {
                    return Err(ConfigError::invalid(
                        key,
                        "(hidden)",
                        "is not a bcrypt hash: it must start with $2a$, $2b$ or $2y$",
                    ))
                }
                Err(e) => {
                    return Err(ConfigError::invalid(
                        key,
                        "(hidden)",
                        format!("is not a bcrypt hash ({e}); create one with `htpasswd -nBC 10 \"\" | tr -d ':\\n'`"),
                    ))
                }
            }
        }
        let dummy_hash = if users.is_empty() {
            String::new()
        } else {
            // The highest cost in the file, so an unknown user costs what the slowest real one does.
            bcrypt::hash("vram-exporter dummy password", max_cost)
                .map_err(|e| ConfigError::Load(format!("cannot create a bcrypt hash: {e}")))?
        };
        Ok(Access {
            users: users.into_iter().collect(),
            dummy_hash,
            headers,
            rate,
            health_open,
        })
    }

    pub fn user_count(&self) -> usize {
        self.users.len()
    }

    fn needs_auth(&self, path: &str) -> bool {
        let open_health = self.health_open && HEALTH_PATHS.contains(&path);
        !(self.users.is_empty() || open_health)
    }
}

/// The settings every request reads: swapped whole by a reload, never edited in place.
pub struct Live {
    access: RwLock<Arc<Access>>,
    tls: RwLock<Option<Arc<rustls::ServerConfig>>>,
    verified: Mutex<HashSet<[u8; 32]>>,
    bcrypt_permits: Arc<Semaphore>,
    bucket: Mutex<Option<Bucket>>,
}

struct Bucket {
    limit: RateLimit,
    tokens: f64,
    last: Instant,
}

impl Live {
    pub fn new(access: Arc<Access>, tls: Option<Arc<rustls::ServerConfig>>) -> Live {
        let live = Live {
            access: RwLock::new(access.clone()),
            tls: RwLock::new(tls),
            verified: Mutex::new(HashSet::new()),
            bcrypt_permits: Arc::new(Semaphore::new(BCRYPT_AT_ONCE)),
            bucket: Mutex::new(None),
        };
        live.reset_bucket(&access);
        live
    }

    /// Installs a newly loaded configuration; requests from now on use it.
    pub fn replace(&self, access: Arc<Access>, tls: Option<Arc<rustls::ServerConfig>>) {
        self.reset_bucket(&access);
        *self.access.write().unwrap_or_else(|e| e.into_inner()) = access;
        *self.tls.write().unwrap_or_else(|e| e.into_inner()) = tls;
    }

    pub fn access(&self) -> Arc<Access> {
        self.access
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn reset_bucket(&self, access: &Access) {
        let mut bucket = self.bucket.lock().unwrap_or_else(|e| e.into_inner());
        let unchanged = bucket.as_ref().map(|b| b.limit) == access.rate;
        if !unchanged {
            *bucket = access.rate.map(|limit| Bucket {
                limit,
                tokens: f64::from(limit.burst),
                last: Instant::now(),
            });
        }
    }

    /// Takes a token; false when the rate limit is exhausted.
    fn allow(&self) -> bool {
        let mut guard = self.bucket.lock().unwrap_or_else(|e| e.into_inner());
        let Some(b) = guard.as_mut() else {
            return true;
        };
        let now = Instant::now();
        let earned = now.duration_since(b.last).as_secs_f64() / b.limit.interval.as_secs_f64();
        b.tokens = (b.tokens + earned).min(f64::from(b.limit.burst));
        b.last = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Whether `user`/`password` is one of the configured users.
    pub async fn check(&self, access: &Access, user: &str, password: &str) -> bool {
        let (stored, known) = match access.users.get(user) {
            Some(hash) => (hash.clone(), true),
            None => (access.dummy_hash.clone(), false),
        };
        let key = cache_key(user, password, &stored);
        if known && self.remembered(&key) {
            return true;
        }
        let Ok(permit) = self.bcrypt_permits.clone().acquire_owned().await else {
            return false;
        };
        // Another request may have checked the same credentials while this one waited.
        if known && self.remembered(&key) {
            return true;
        }
        let password = password.to_owned();
        let matched = tokio::task::spawn_blocking(move || {
            let ok = bcrypt::verify(password, &stored).unwrap_or(false);
            drop(permit);
            ok
        })
        .await
        .unwrap_or(false);
        let ok = matched && known;
        if ok {
            let mut set = self.verified.lock().unwrap_or_else(|e| e.into_inner());
            if set.len() >= CACHE_CAPACITY {
                set.clear();
            }
            set.insert(key);
        }
        ok
    }

    fn remembered(&self, key: &[u8; 32]) -> bool {
        self.verified
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(key)
    }
}

impl crate::serve::TlsSource for Live {
    fn current(&self) -> Option<Arc<rustls::ServerConfig>> {
        self.tls.read().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

fn cache_key(user: &str, password: &str, stored: &str) -> [u8; 32] {
    let mut h = Sha256::new();
    // Length prefixes keep ("ab","c") and ("a","bc") apart.
    for part in [user, password, stored] {
        h.update((part.len() as u64).to_le_bytes());
        h.update(part.as_bytes());
    }
    h.finalize().into()
}

/// The user and password of a `Basic` Authorization header.
fn basic_credentials(value: &HeaderValue) -> Option<(String, String)> {
    let text = value.to_str().ok()?;
    let (scheme, encoded) = text.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let decoded = String::from_utf8(decoded).ok()?;
    let (user, password) = decoded.split_once(':')?;
    Some((user.to_owned(), password.to_owned()))
}

/// Outermost layer: the rate limit, then the configured headers on every response (including
/// 401, 404, 408, 429 and 503).
pub async fn headers_and_rate_limit(
    State(live): State<Arc<Live>>,
    request: Request,
    next: Next,
) -> Response {
    let access = live.access();
    let mut response = if live.allow() {
        next.run(request).await
    } else {
        (StatusCode::TOO_MANY_REQUESTS, "too many requests\n").into_response()
    };
    for (name, value) in &access.headers {
        response.headers_mut().insert(name.clone(), value.clone());
    }
    response
}

/// Basic auth, inside the load limits so a flood of password checks is shed like any other load.
pub async fn basic_auth(State(live): State<Arc<Live>>, request: Request, next: Next) -> Response {
    let access = live.access();
    if !access.needs_auth(request.uri().path()) {
        return next.run(request).await;
    }
    if let Some((user, password)) = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(basic_credentials)
    {
        if live.check(&access, &user, &password).await {
            return next.run(request).await;
        }
    }
    (
        StatusCode::UNAUTHORIZED,
        [(header::WWW_AUTHENTICATE, "Basic")],
        "unauthorized\n",
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn access(users: &[(&str, &str)]) -> Access {
        let users = users
            .iter()
            .map(|(u, p)| (u.to_string(), bcrypt::hash(p, 4).unwrap()))
            .collect();
        Access::new(users, Vec::new(), None, false).unwrap()
    }

    #[tokio::test]
    async fn passwords_are_checked_and_successes_remembered() {
        let a = Arc::new(access(&[("alice", "secret")]));
        let live = Live::new(a.clone(), None);
        assert!(live.check(&a, "alice", "secret").await);
        assert!(live.remembered(&cache_key("alice", "secret", &a.users["alice"])));
        assert!(live.check(&a, "alice", "secret").await, "from the cache");
        assert!(!live.check(&a, "alice", "wrong").await);
        assert!(!live.check(&a, "bob", "secret").await);
        assert_eq!(
            live.verified.lock().unwrap().len(),
            1,
            "failures are not cached"
        );
    }

    #[test]
    fn dummy_hash_has_the_highest_cost() {
        let a = Access::new(
            BTreeMap::from([
                ("u".to_string(), bcrypt::hash("p", 4).unwrap()),
                ("v".to_string(), bcrypt::hash("p", 6).unwrap()),
            ]),
            Vec::new(),
            None,
            false,
        )
        .unwrap();
        let parts: bcrypt::HashParts = a.dummy_hash.parse().unwrap();
        assert_eq!(parts.get_cost(), 6);
    }

    #[test]
    fn costs_that_would_stall_loading_are_refused() {
        let hash = bcrypt::hash("p", 4).unwrap().replacen("$04$", "$31$", 1);
        let err = Access::new(
            BTreeMap::from([("dave".to_string(), hash)]),
            Vec::new(),
            None,
            false,
        )
        .err()
        .expect("cost 31 is refused");
        let msg = err.to_string();
        assert!(
            msg.contains("basic_auth_users.dave") && msg.contains("cost 31"),
            "{msg}"
        );
    }

    #[test]
    fn non_bcrypt_hashes_are_refused_naming_the_user() {
        for bad in [
            "plaintext",
            "$1$abc$0123456789012345678901",
            "$2x$04$abcdefghijklmnopqrstuuWQ.S2dYyHuBdqgt0XpW0a1JH3e1Pkqy",
        ] {
            let err = Access::new(
                BTreeMap::from([("carol".to_string(), bad.to_string())]),
                Vec::new(),
                None,
                false,
            )
            .err()
            .expect("refused");
            let msg = err.to_string();
            assert!(msg.contains("basic_auth_users.carol"), "{msg}");
            assert!(!msg.contains(bad), "the hash is not echoed: {msg}");
        }
    }

    #[test]
    fn basic_header_parsing() {
        let v = HeaderValue::from_static("Basic YWxpY2U6c2U6Y3JldA==");
        assert_eq!(
            basic_credentials(&v),
            Some(("alice".into(), "se:cret".into()))
        );
        let v = HeaderValue::from_static("basic YTpi");
        assert_eq!(basic_credentials(&v), Some(("a".into(), "b".into())));
        assert_eq!(
            basic_credentials(&HeaderValue::from_static("Bearer x")),
            None
        );
        assert_eq!(
            basic_credentials(&HeaderValue::from_static("Basic !!")),
            None
        );
    }

    #[test]
    fn health_can_be_opened_and_nothing_else() {
        let mut a = access(&[("u", "p")]);
        assert!(a.needs_auth("/-/healthy"));
        a.health_open = true;
        assert!(!a.needs_auth("/-/healthy"));
        assert!(!a.needs_auth("/-/ready"));
        assert!(a.needs_auth("/metrics"));
        assert!(!access(&[]).needs_auth("/metrics"), "no users: no auth");
    }

    #[test]
    fn rate_limit_bucket() {
        let a = Arc::new(
            Access::new(
                BTreeMap::new(),
                Vec::new(),
                Some(RateLimit {
                    interval: Duration::from_secs(3600),
                    burst: 2,
                }),
                false,
            )
            .unwrap(),
        );
        let live = Live::new(a, None);
        assert!(live.allow());
        assert!(live.allow());
        assert!(
            !live.allow(),
            "the burst is spent and the next token is an hour away"
        );
    }
}
