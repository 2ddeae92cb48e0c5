//! The gateway's own browser login (issue 16): OIDC authorization code with
//! PKCE (S256) against the configured issuer, per-flow sealed state
//! cookies, the callback (code exchange, ID token checked through the same
//! key cache as bearer tokens), sealed session cookies, and logout. The
//! request path (`pipeline::login`) decides when each is used; this folder
//! never sees the route table.

pub mod backchannel;
pub mod cookies;
pub mod flow;
pub mod logout;
pub mod oidc;
pub mod opened;
pub mod pages;
pub mod refresh;
pub mod seal;
pub mod sessions;
pub mod store;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use http::HeaderMap;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::auth::Identity;
use crate::config::{BrowserLoginSettings, IssuerSettings, SessionStoreSettings};
use oidc::Provider;
use seal::Sealer;
use store::Store;

/// Most ended sessions and spent `state`s remembered per process.
const MAX_REMEMBERED: usize = 100_000;

/// What became of a refresh.
#[derive(Debug, Clone)]
pub enum Refreshed {
    /// New tokens; the cookie lines store them.
    Fresh(Box<Session>, Vec<String>),
    /// The provider refused: the session is over (the lines clear it).
    Ended(Vec<String>),
    /// The provider could not be asked; nothing was changed.
    Down,
}

/// One refresh in flight or just done, shared by every request of a session.
pub type Flight = Arc<tokio::sync::OnceCell<Refreshed>>;

/// One logged-in browser, as sealed into its cookie.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Session {
    /// Random, new on every login (never taken from the browser).
    pub id: String,
    /// The verified ID token's claims, over the access token's when it is a JWT.
    pub claims: Map<String, Value>,
    pub access_token: String,
    pub refresh_token: Option<String>,
    /// Kept for logout's `id_token_hint`.
    pub id_token: String,
    /// When the access token expires (Unix seconds).
    pub access_exp: u64,
    /// `session_lifetime` after the login (Unix seconds).
    pub expires: u64,
    /// Cookie store with `idle_timeout`: when the cookie was last re-sealed
    /// by a request (Unix seconds).
    #[serde(default)]
    pub last_seen: u64,
}

/// What the session cookie of a request amounts to.
#[derive(Debug)]
pub enum Lookup {
    /// No session cookie at all.
    Absent,
    /// A cookie that does not open, is expired or was logged out.
    Invalid(&'static str),
    Valid(Box<Session>),
    /// Good, but the access token is within `refresh_margin` of expiring
    /// (or past it) and there is a refresh token: refresh before use.
    Stale(Box<Session>),
    /// The session store could not be asked: 503, never a pass nor a logout.
    Unavailable,
}

/// The live login state of one `[login]`: keys, provider client, and what
/// this process remembers (spent `state`s, logged-out sessions).
pub struct LoginService {
    pub settings: Arc<BrowserLoginSettings>,
    sealer: Sealer,
    provider: Provider,
    /// Where sessions live.
    pub store: Store,
    /// `state` -> when it stops mattering; a callback is honoured once.
    spent_states: Mutex<HashMap<String, u64>>,
    /// Session id -> its expiry: sessions logged out here. A copied cookie
    /// stays refused by this process (a server-side store covers replicas).
    ended: Mutex<HashMap<String, u64>>,
    /// Refreshes in flight or just done, by session and refresh token.
    flights: Mutex<HashMap<String, (u64, Flight)>>,
    /// Session cookies opened a moment ago (`opened.rs`).
    opened: opened::OpenedCache,
}

impl LoginService {
    /// Builds the service for `settings`, talking to `issuer`.
    pub fn new(settings: Arc<BrowserLoginSettings>, issuer: &IssuerSettings) -> Result<LoginService, String> {
        let sealer = Sealer::new(&settings.cookie_keys).ok_or("login.cookie_keys: no usable key")?;
        let provider = Provider::new(&issuer.issuer, issuer.ca_file.as_deref())?;
        let store = Store::new(&settings.store)?;
        Ok(LoginService {
            settings,
            sealer,
            provider,
            store,
            spent_states: Mutex::default(),
            ended: Mutex::default(),
            flights: Mutex::default(),
            opened: Default::default(),
        })
    }

    /// True when a reload may keep this service (and what it remembers).
    pub fn same_settings(&self, settings: &BrowserLoginSettings) -> bool {
        *self.settings == *settings
    }

    /// How long an opened session may be served without asking `lookup`
    /// again: the cookie store without `idle_timeout` as long as the session
    /// itself allows (the cookie is the session, and `lookup` must see every
    /// request to slide an idle timeout); the Redis store `redis_cache_ttl`.
    fn reuse_for(&self) -> Option<u64> {
        match &self.settings.store {
            SessionStoreSettings::Cookie if self.settings.idle_timeout.is_zero() => Some(u64::MAX),
            SessionStoreSettings::Redis(r) if !r.cache_ttl.is_zero() => Some(r.cache_ttl.as_secs().max(1)),
            _ => None,
        }
    }

    /// The fast path of [`lookup`](Self::lookup) for a session that is
    /// simply valid (`Lookup::Valid`): the opened session, from the
    /// opened-cookie cache (`opened.rs`) when this exact cookie was opened
    /// before (cookie store: opened here on a miss). `None` for anything
    /// else (absent, invalid, due for refresh, a Redis miss): ask `lookup`.
    pub fn open_valid(&self, headers: &HeaderMap, now: u64) -> Option<Arc<opened::Opened>> {
        let reuse = self.reuse_for()?;
        let name = &self.settings.cookie_name;
        let jar = cookies::request_cookies(headers);
        let value = match cookies::get(&jar, name) {
            Some(v) => std::borrow::Cow::Borrowed(v),
            None => std::borrow::Cow::Owned(cookies::joined(&jar, name)?),
        };
        let margin = self.settings.refresh_margin.as_secs();
        let good = |o: &opened::Opened| o.fresh(now, margin) && !lock(&self.ended).contains_key(o.id());
        if let Some(o) = self.opened.get(&value) {
            return good(&o).then_some(o);
        }
        if reuse != u64::MAX {
            return None;
        }
        let s: Session = self.sealer.open(name, &value).ok().and_then(|p| serde_json::from_slice(&p).ok())?;
        let o = Arc::new(opened::Opened::new(&value, s.id, s.claims, s.access_token, s.access_exp, s.expires, u64::MAX));
        if !good(&o) {
            return None;
        }
        self.opened.insert(o.clone(), now);
        Some(o)
    }

    /// Redis store: keeps a session `lookup` just read as valid, so this
    /// browser's next requests within `redis_cache_ttl` skip the round trip.
    pub fn keep_opened(&self, headers: &HeaderMap, session: &Session, now: u64) {
        let Some(reuse) = self.reuse_for().filter(|r| *r != u64::MAX) else { return };
        let jar = cookies::request_cookies(headers);
        let Some(value) = cookies::joined(&jar, &self.settings.cookie_name) else { return };
        let s = session.clone();
        let o = opened::Opened::new(&value, s.id, s.claims, s.access_token, s.access_exp, s.expires, now.saturating_add(reuse));
        self.opened.insert(Arc::new(o), now);
    }

    /// Drops every opened session (sessions were ended elsewhere).
    pub fn forget_opened(&self) {
        self.opened.clear();
    }

    /// The identity a session carries, for the route checks and headers.
    pub fn identity(&self, session: Session) -> Identity {
        Identity { claims: Arc::new(session.claims), issuer: self.settings.issuer, rendered: None }
    }

    /// Remembers `key` until `until` in `map`, forgetting what has passed.
    fn remember(map: &Mutex<HashMap<String, u64>>, key: String, until: u64, now: u64) -> bool {
        let mut m = lock(map);
        if m.len() >= MAX_REMEMBERED {
            m.retain(|_, t| *t > now);
        }
        if m.len() >= MAX_REMEMBERED {
            // Full of live entries: refusing here would let a flood of
            // logins lock everyone out; the oldest-expiring goes.
            if let Some(k) = m.iter().min_by_key(|(_, t)| **t).map(|(k, _)| k.clone()) {
                m.remove(&k);
            }
        }
        m.insert(key, until).is_none()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
