//! The affinity cookie: what it carries, how it is signed, and how it is read from and kept out
//! of requests.
//!
//! Value: base64url (no padding) of `version (1) ‖ endpoint id (8, BE) ‖ expiry (8, BE, Unix
//! seconds) ‖ HMAC-SHA256(key, "weir-affinity" ‖ the 17 bytes before)`, 49 bytes → 66
//! characters. The endpoint id is a hash of the endpoint's address ([`endpoint_id`]): it does
//! not spell the address out, but it is not a secret either. What the HMAC gives is integrity:
//! without the key a client cannot make a cookie for an endpoint of its choice, nor extend one's
//! expiry. The tag is checked with `ring::hmac::verify`, in constant time. Expiry is signed, so
//! even a session cookie (no `Max-Age`) stops working after its lifetime.

use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::HeaderMap;
use http::header::{COOKIE, HeaderValue};
use ring::hmac;
use weir_config::AffinityCookieConfig;

/// Format version of the cookie value.
const VERSION: u8 = 1;
/// Bytes before the tag: version, endpoint id, expiry.
const BODY_LEN: usize = 1 + 8 + 8;
/// Bytes of an HMAC-SHA256 tag.
const TAG_LEN: usize = 32;
/// Domain separation for the MAC input: the key signs affinity cookies only.
const CONTEXT: &[u8] = b"weir-affinity";

/// A compiled `session_affinity.cookie`: the key and the `Set-Cookie` attributes.
#[derive(Debug)]
pub(crate) struct CookiePolicy {
    /// The cookie name.
    pub(crate) name: String,
    key: hmac::Key,
    /// How long a cookie is valid after it is issued.
    lifetime: Duration,
    /// `; Path=/; Max-Age=..; HttpOnly; SameSite=Lax`, computed once.
    attributes: String,
}

/// A cookie that was checked: the endpoint it names and when it expires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Session {
    /// The [`endpoint_id`] it names.
    pub(crate) endpoint: u64,
    /// Unix seconds after which it is invalid.
    pub(crate) expires: u64,
}

/// Why a cookie was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Invalid {
    /// Not ours: bad encoding, length, version or tag.
    Forged,
    /// Signed by us, but past its expiry.
    Expired,
}

// === impl CookiePolicy ===

impl CookiePolicy {
    /// Compiles `cfg`; `generated` is the process's random key, used when `cfg` has none.
    pub(crate) fn new(cfg: &AffinityCookieConfig, generated: &[u8]) -> Result<Self, String> {
        let key = cfg.key_bytes()?;
        let key = hmac::Key::new(hmac::HMAC_SHA256, key.as_deref().unwrap_or(generated));
        let mut attributes = format!("; Path={}", cfg.path);
        if let Some(domain) = &cfg.domain {
            attributes.push_str("; Domain=");
            attributes.push_str(domain);
        }
        if !cfg.ttl.get().is_zero() {
            attributes.push_str(&format!("; Max-Age={}", cfg.ttl.get().as_secs().max(1)));
        }
        if cfg.secure {
            attributes.push_str("; Secure");
        }
        if cfg.http_only {
            attributes.push_str("; HttpOnly");
        }
        attributes.push_str("; SameSite=");
        attributes.push_str(cfg.same_site.as_str());
        Ok(Self {
            name: cfg.name.clone(),
            key,
            lifetime: cfg.lifetime(),
            attributes,
        })
    }

    /// The cookie value naming endpoint `id`, valid from `now` (Unix seconds) for the lifetime.
    pub(crate) fn encode(&self, id: u64, now: u64) -> String {
        let mut bytes = [0u8; BODY_LEN + TAG_LEN];
        bytes[0] = VERSION;
        bytes[1..9].copy_from_slice(&id.to_be_bytes());
        let expires = now.saturating_add(self.lifetime.as_secs());
        bytes[9..17].copy_from_slice(&expires.to_be_bytes());
        let tag = self.tag(&bytes[..BODY_LEN]);
        bytes[BODY_LEN..].copy_from_slice(tag.as_ref());
        data_encoding::BASE64URL_NOPAD.encode(&bytes)
    }

    /// Checks a cookie value at `now` (Unix seconds).
    pub(crate) fn decode(&self, value: &str, now: u64) -> Result<Session, Invalid> {
        let bytes = data_encoding::BASE64URL_NOPAD
            .decode(value.as_bytes())
            .map_err(|_| Invalid::Forged)?;
        if bytes.len() != BODY_LEN + TAG_LEN || bytes[0] != VERSION {
            return Err(Invalid::Forged);
        }
        let (body, tag) = bytes.split_at(BODY_LEN);
        let mut input = Vec::with_capacity(CONTEXT.len() + BODY_LEN);
        input.extend_from_slice(CONTEXT);
        input.extend_from_slice(body);
        hmac::verify(&self.key, &input, tag).map_err(|_| Invalid::Forged)?;
        let word = |r: std::ops::Range<usize>| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&body[r]);
            u64::from_be_bytes(b)
        };
        let session = Session {
            endpoint: word(1..9),
            expires: word(9..17),
        };
        if session.expires <= now {
            return Err(Invalid::Expired);
        }
        Ok(session)
    }

    /// Whether `session` should be re-issued at `now`: less than half its lifetime is left, so
    /// a session in use never runs out (a sliding expiry).
    pub(crate) fn needs_refresh(&self, session: &Session, now: u64) -> bool {
        session.expires.saturating_sub(now) < self.lifetime.as_secs() / 2
    }

    /// The `Set-Cookie` header value for a cookie value.
    pub(crate) fn set_cookie(&self, value: &str) -> Option<HeaderValue> {
        HeaderValue::from_str(&format!("{}={value}{}", self.name, self.attributes)).ok()
    }

    fn tag(&self, body: &[u8]) -> hmac::Tag {
        let mut ctx = hmac::Context::with_key(&self.key);
        ctx.update(CONTEXT);
        ctx.update(body);
        ctx.sign()
    }
}

/// The id an affinity cookie names an endpoint by: XXH3 of its IP octets and port.
pub(crate) fn endpoint_id(address: SocketAddr) -> u64 {
    let mut buf = [0u8; 18];
    let len = match address {
        SocketAddr::V4(a) => {
            buf[..4].copy_from_slice(&a.ip().octets());
            buf[4..6].copy_from_slice(&a.port().to_be_bytes());
            6
        }
        SocketAddr::V6(a) => {
            buf[..16].copy_from_slice(&a.ip().octets());
            buf[16..].copy_from_slice(&a.port().to_be_bytes());
            18
        }
    };
    xxhash_rust::xxh3::xxh3_64(&buf[..len])
}

/// Unix seconds now (0 if the system clock is before 1970).
pub(crate) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Removes every cookie named `name` from the `Cookie` headers of `headers` (dropping a header
/// left empty) and returns the first one's value. Other cookies pass unchanged, in order.
pub(crate) fn take(headers: &mut HeaderMap, name: &str) -> Option<String> {
    let mut found = None;
    let mut kept: Vec<HeaderValue> = Vec::new();
    let mut touched = false;
    for value in headers.get_all(COOKIE) {
        let Ok(text) = value.to_str() else {
            kept.push(value.clone());
            continue;
        };
        let mut rest = Vec::new();
        for pair in text.split(';') {
            let pair = pair.trim();
            match pair.split_once('=') {
                Some((k, v)) if k.trim() == name => {
                    touched = true;
                    found.get_or_insert_with(|| v.trim().trim_matches('"').to_owned());
                }
                _ if pair.is_empty() => {}
                _ => rest.push(pair),
            }
        }
        if rest.is_empty() {
            continue;
        }
        match HeaderValue::from_str(&rest.join("; ")) {
            Ok(v) => kept.push(v),
            Err(_) => kept.push(value.clone()),
        }
    }
    if touched {
        headers.remove(COOKIE);
        for v in kept {
            headers.append(COOKIE, v);
        }
    }
    found
}

/// Checks the cookie code against untrusted `data` (the `affinity_cookie` fuzz target and a
/// unit test): as `Cookie` header text, [`take`] never panics, returns the first affinity
/// cookie and leaves none behind; as a cookie value, [`CookiePolicy::decode`] never accepts
/// what was not signed with the key; and a cookie made for an id from `data` decodes to it.
#[cfg(any(test, fuzzing))]
pub(crate) fn check_untrusted(data: &[u8]) {
    let policy = CookiePolicy {
        name: "weir-affinity".into(),
        key: hmac::Key::new(hmac::HMAC_SHA256, &[0x5a; 32]),
        lifetime: Duration::from_secs(3600),
        attributes: String::new(),
    };
    let text = String::from_utf8_lossy(data);
    if let Ok(value) = HeaderValue::from_str(&text) {
        let mut headers = HeaderMap::new();
        headers.append(COOKIE, value);
        let _ = take(&mut headers, &policy.name);
        assert_eq!(
            take(&mut headers, &policy.name),
            None,
            "one take removes them all"
        );
    }
    assert!(
        policy.decode(&text, 0).is_err(),
        "accepted an unsigned cookie {text:?}"
    );
    let mut word = [0u8; 8];
    for (w, b) in word.iter_mut().zip(data) {
        *w = *b;
    }
    let id = u64::from_le_bytes(word);
    let made = policy.encode(id, 1_000);
    assert_eq!(policy.decode(&made, 1_000).map(|s| s.endpoint), Ok(id));
}

#[cfg(test)]
mod tests {
    use super::*;
    use weir_config::{ConfigDuration, SameSiteConfig};

    fn policy(ttl: u64) -> CookiePolicy {
        policy_with(ttl, None)
    }

    fn policy_with(ttl: u64, key: Option<String>) -> CookiePolicy {
        let cfg = AffinityCookieConfig {
            name: "weir-affinity".into(),
            ttl: ConfigDuration(Duration::from_secs(ttl)),
            path: "/".into(),
            domain: Some("example.com".into()),
            secure: true,
            http_only: true,
            same_site: SameSiteConfig::Strict,
            key,
        };
        CookiePolicy::new(&cfg, &[7u8; 32]).unwrap()
    }

    #[test]
    fn a_cookie_round_trips_and_expires() {
        let p = policy(60);
        let v = p.encode(42, 1_000);
        assert_eq!(v.len(), 66);
        assert_eq!(
            p.decode(&v, 1_001),
            Ok(Session {
                endpoint: 42,
                expires: 1_060
            })
        );
        assert_eq!(p.decode(&v, 1_060), Err(Invalid::Expired));
        let s = p.decode(&v, 1_029).unwrap();
        assert!(!p.needs_refresh(&s, 1_029) && p.needs_refresh(&s, 1_031));
    }

    #[test]
    fn any_change_to_the_value_is_a_forgery() {
        let p = policy(60);
        let v = p.encode(42, 1_000);
        let mut bytes = data_encoding::BASE64URL_NOPAD.decode(v.as_bytes()).unwrap();
        for i in [0, 1, 9, 20, 48] {
            bytes[i] ^= 1;
            let tampered = data_encoding::BASE64URL_NOPAD.encode(&bytes);
            assert_eq!(p.decode(&tampered, 1_001), Err(Invalid::Forged), "byte {i}");
            bytes[i] ^= 1;
        }
        assert_eq!(p.decode("", 0), Err(Invalid::Forged));
        assert_eq!(p.decode("!!!", 0), Err(Invalid::Forged));
        assert_eq!(p.decode(&v[..60], 0), Err(Invalid::Forged));
        // Another key's cookie is a forgery too.
        let other = policy_with(60, Some("11".repeat(32)));
        assert_eq!(other.decode(&v, 1_001), Err(Invalid::Forged));
    }

    #[test]
    fn set_cookie_carries_the_attributes() {
        let p = policy(3600);
        let h = p.set_cookie("abc").unwrap();
        assert_eq!(
            h.to_str().unwrap(),
            "weir-affinity=abc; Path=/; Domain=example.com; Max-Age=3600; Secure; HttpOnly; SameSite=Strict"
        );
        let session = policy(0).set_cookie("abc").unwrap();
        assert!(!session.to_str().unwrap().contains("Max-Age"));
    }

    #[test]
    fn take_strips_only_the_affinity_cookie() {
        let mut h = HeaderMap::new();
        h.append(
            COOKIE,
            HeaderValue::from_static("a=1; weir-affinity=xyz; b=2"),
        );
        h.append(COOKIE, HeaderValue::from_static("weir-affinity=second"));
        h.append(COOKIE, HeaderValue::from_static("c=3"));
        assert_eq!(take(&mut h, "weir-affinity").as_deref(), Some("xyz"));
        let left: Vec<_> = h
            .get_all(COOKIE)
            .iter()
            .map(|v| v.to_str().unwrap())
            .collect();
        assert_eq!(left, ["a=1; b=2", "c=3"]);
        let mut none = HeaderMap::new();
        none.append(COOKIE, HeaderValue::from_static("a=1"));
        assert_eq!(take(&mut none, "weir-affinity"), None);
        assert_eq!(none.get(COOKIE).unwrap(), "a=1");
    }

    #[test]
    fn untrusted_input_never_panics_nor_passes() {
        // A deterministic stand-in for the fuzz target: random bytes, and cookie-shaped text.
        let mut x = 0x9e37_79b9_7f4a_7c15_u64;
        for len in 0..400 {
            let bytes: Vec<u8> = (0..len % 80)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x as u8
                })
                .collect();
            check_untrusted(&bytes);
            let shaped: String = bytes
                .iter()
                .map(|b| b"ab=;weir-affinity \"-_AZ09"[usize::from(*b) % 25] as char)
                .collect();
            check_untrusted(shaped.as_bytes());
        }
    }

    #[test]
    fn endpoint_ids_differ_by_ip_and_port() {
        let a = endpoint_id("10.0.0.1:80".parse().unwrap());
        assert_ne!(a, endpoint_id("10.0.0.1:81".parse().unwrap()));
        assert_ne!(a, endpoint_id("[::1]:80".parse().unwrap()));
        assert_eq!(a, endpoint_id("10.0.0.1:80".parse().unwrap()));
    }
}
