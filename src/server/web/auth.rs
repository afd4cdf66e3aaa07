//! Basic auth, response headers and rate limiting from the web configuration, as axum middleware
//! reading the live (reloadable) settings.
//!
//! Passwords are checked with bcrypt, which is slow on purpose, so four things keep it in hand:
//! - an unknown user is checked against a dummy hash of the file's highest cost, and every failed
//!   check lasts at least as long as one check at that cost, so neither which users exist nor
//!   whose hash is cheaper shows in the response time;
//! - a successful check is remembered, keyed by a SHA-256 of user, password and stored hash, so
//!   scrapes with the same credentials cost one bcrypt run and never wait for another;
//! - bcrypt runs on blocking threads, at most [`BCRYPT_AT_ONCE`] at a time, never on the two async
//!   workers, with at most [`BCRYPT_QUEUE`] more waiting: past that a check is refused at once
//!   with 429, so a flood of wrong passwords is shed for the flooding clients, while the
//!   remembered credentials and the health endpoints never wait behind it;
//! - auth runs outside the concurrency limit (`http.rs`), so waiting checks hold no request slot.
//!
//! The rate limit is a token bucket per client address (IPv6 per /64): one client over it gets
//! 429, never the others.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderName, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use sha2::{Digest, Sha256};
use tokio::sync::Semaphore;

use crate::base::input::ConfigError;

/// bcrypt checks running at once.
pub const BCRYPT_AT_ONCE: usize = 2;
/// bcrypt checks waiting for one of the [`BCRYPT_AT_ONCE`]; more are refused with 429.
pub const BCRYPT_QUEUE: usize = 8;
/// Clients with a rate-limit bucket; when full, buckets that refilled are dropped (and if none
/// did, all of them: a flood of addresses may reset limits, never lock a client out).
const MAX_BUCKETS: usize = 4096;
/// Remembered successful checks; the set is emptied when it fills.
const CACHE_CAPACITY: usize = 1024;
/// The endpoints `vram_exporter.unauthenticated_health` opens.
/// The health endpoints: `vram_exporter.unauthenticated_health` opens them, and the concurrency
/// limit (`http.rs`) never sheds them.
pub const HEALTH_PATHS: &[&str] = &["/-/healthy", "/-/ready"];

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
    /// How long one check at the file's highest cost took when the file was loaded: every failed
    /// check lasts at least this long.
    slowest_check: Duration,
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
        let (dummy_hash, slowest_check) = if users.is_empty() {
            (String::new(), Duration::ZERO)
        } else {
            // The highest cost in the file, so an unknown user costs what the slowest real one does.
            let dummy = bcrypt::hash("vram-exporter dummy password", max_cost)
                .map_err(|e| ConfigError::Load(format!("cannot create a bcrypt hash: {e}")))?;
            let started = Instant::now();
            let _ = bcrypt::verify("not the dummy password", &dummy);
            (dummy, started.elapsed())
        };
        Ok(Access {
            users: users.into_iter().collect(),
            dummy_hash,
            slowest_check,
            headers,
            rate,
            health_open,
        })
    }

    pub fn user_count(&self) -> usize {
        self.users.len()
    }

    /// Whether `/-/healthy` and `/-/ready` answer without basic auth.
    pub fn health_open(&self) -> bool {
        self.health_open
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
    /// Admission to bcrypt: running plus waiting checks.
    bcrypt_queue: Arc<Semaphore>,
    buckets: Mutex<Buckets>,
}

/// The rate limit in force and one bucket per client.
#[derive(Default)]
struct Buckets {
    limit: Option<RateLimit>,
    by_client: HashMap<IpAddr, Bucket>,
}

struct Bucket {
    tokens: f64,
    last: Instant,
}

/// The outcome of a password check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Allowed,
    Denied,
    /// Too many checks running and waiting: refused without checking.
    Busy,
}

/// The rate-limit key of a client: its IPv4 address, or the /64 of its IPv6 address.
fn client_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

impl Live {
    pub fn new(access: Arc<Access>, tls: Option<Arc<rustls::ServerConfig>>) -> Live {
        let live = Live {
            access: RwLock::new(access.clone()),
            tls: RwLock::new(tls),
            verified: Mutex::new(HashSet::new()),
            bcrypt_permits: Arc::new(Semaphore::new(BCRYPT_AT_ONCE)),
            bcrypt_queue: Arc::new(Semaphore::new(BCRYPT_AT_ONCE + BCRYPT_QUEUE)),
            buckets: Mutex::new(Buckets::default()),
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
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if buckets.limit != access.rate {
            buckets.limit = access.rate;
            buckets.by_client.clear();
        }
    }

    /// Takes a token from `client`'s bucket; false when its rate limit is exhausted.
    fn allow(&self, client: IpAddr) -> bool {
        let mut guard = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        let Buckets { limit, by_client } = &mut *guard;
        let Some(limit) = *limit else {
            return true;
        };
        let now = Instant::now();
        let burst = f64::from(limit.burst);
        let refill = |b: &Bucket| {
            let earned = now.duration_since(b.last).as_secs_f64() / limit.interval.as_secs_f64();
            (b.tokens + earned).min(burst)
        };
        let key = client_key(client);
        if by_client.len() >= MAX_BUCKETS && !by_client.contains_key(&key) {
            by_client.retain(|_, b| refill(b) < burst);
            if by_client.len() >= MAX_BUCKETS {
                by_client.clear();
            }
        }
        let b = by_client.entry(key).or_insert(Bucket {
            tokens: burst,
            last: now,
        });
        b.tokens = refill(b);
        b.last = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Whether `user`/`password` is one of the configured users.
    pub async fn check(&self, access: &Access, user: &str, password: &str) -> Verdict {
        let (stored, known) = match access.users.get(user) {
            Some(hash) => (hash.clone(), true),
            None => (access.dummy_hash.clone(), false),
        };
        let key = cache_key(user, password, &stored);
        if known && self.remembered(&key) {
            return Verdict::Allowed;
        }
        let Ok(admitted) = self.bcrypt_queue.clone().try_acquire_owned() else {
            return Verdict::Busy;
        };
        let Ok(permit) = self.bcrypt_permits.clone().acquire_owned().await else {
            return Verdict::Denied;
        };
        // Another request may have checked the same credentials while this one waited.
        if known && self.remembered(&key) {
            return Verdict::Allowed;
        }
        let started = tokio::time::Instant::now();
        let password = password.to_owned();
        let matched = tokio::task::spawn_blocking(move || {
            let ok = bcrypt::verify(password, &stored).unwrap_or(false);
            drop(permit);
            ok
        })
        .await
        .unwrap_or(false);
        drop(admitted);
        if !(matched && known) {
            // A cheaper hash, or none, must not answer sooner than the most expensive one.
            tokio::time::sleep_until(started + access.slowest_check).await;
            return Verdict::Denied;
        }
        let mut set = self.verified.lock().unwrap_or_else(|e| e.into_inner());
        if set.len() >= CACHE_CAPACITY {
            set.clear();
        }
        set.insert(key);
        Verdict::Allowed
    }

    fn remembered(&self, key: &[u8; 32]) -> bool {
        self.verified
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(key)
    }
}

impl crate::server::serve::TlsSource for Live {
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

/// Outermost layer: the client's rate limit, then the configured headers on every response
/// (including 401, 404, 408, 429 and 503).
pub async fn headers_and_rate_limit(
    State(live): State<Arc<Live>>,
    request: Request,
    next: Next,
) -> Response {
    let access = live.access();
    // The server (`serve`) records every connection's peer; without one (tests driving the
    // router directly) all requests share one bucket.
    let client = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map_or(IpAddr::from([0, 0, 0, 0]), |c| c.0.ip());
    let mut response = if live.allow(client) {
        next.run(request).await
    } else {
        (StatusCode::TOO_MANY_REQUESTS, "too many requests\n").into_response()
    };
    for (name, value) in &access.headers {
        response.headers_mut().insert(name.clone(), value.clone());
    }
    response
}

/// Basic auth, outside the load limits: a remembered login passes at once, a new one waits for
/// bcrypt in its own bounded queue (429 when it is full), holding no request slot meanwhile.
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
        match live.check(&access, &user, &password).await {
            Verdict::Allowed => return next.run(request).await,
            Verdict::Denied => {}
            Verdict::Busy => {
                return (
                    StatusCode::TOO_MANY_REQUESTS,
                    [(header::RETRY_AFTER, "1")],
                    "too many password checks in progress\n",
                )
                    .into_response()
            }
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
        assert_eq!(live.check(&a, "alice", "secret").await, Verdict::Allowed);
        assert!(live.remembered(&cache_key("alice", "secret", &a.users["alice"])));
        assert_eq!(
            live.check(&a, "alice", "secret").await,
            Verdict::Allowed,
            "from the cache"
        );
        assert_eq!(live.check(&a, "alice", "wrong").await, Verdict::Denied);
        assert_eq!(live.check(&a, "bob", "secret").await, Verdict::Denied);
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
        let one: IpAddr = [10, 0, 0, 1].into();
        assert!(live.allow(one));
        assert!(live.allow(one));
        assert!(
            !live.allow(one),
            "the burst is spent and the next token is an hour away"
        );
        assert!(
            live.allow([10, 0, 0, 2].into()),
            "another client has its own"
        );
        let v6 = |last: u16| IpAddr::from([0x2001, 0xdb8, 0, 1, 0, 0, 0, last]);
        assert!(live.allow(v6(1)) && live.allow(v6(2)));
        assert!(!live.allow(v6(3)), "one bucket per IPv6 /64");
    }
}
