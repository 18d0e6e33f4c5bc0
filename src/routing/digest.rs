//! SIP digest authentication (RFC 2617, RFC 7616, RFC 8760): MD5 and SHA-256, `qop=auth`.
//!
//! Client side: answer a `WWW-Authenticate`/`Proxy-Authenticate` challenge from a trunk's targets.
//! Server side: challenge requests on trunks with inbound auth. Nonces are stateless (timestamp plus an HMAC
//! under a server secret), so any restart or second instance with the same secret accepts them; only the
//! highest `nc` per nonce is remembered, to refuse replays.
//!
//! Header values are untrusted: every malformed input is a typed error.

use crate::config::{Credentials, DigestAlgorithm, InboundAuth, User};
use hmac::{Hmac, KeyInit, Mac};
use md5::Md5;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::fmt::Write as _;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    Md5,
    Md5Sess,
    Sha256,
    Sha256Sess,
}

impl Algorithm {
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::Md5 => "MD5",
            Algorithm::Md5Sess => "MD5-sess",
            Algorithm::Sha256 => "SHA-256",
            Algorithm::Sha256Sess => "SHA-256-sess",
        }
    }

    fn parse(s: &str) -> Result<Self, DigestError> {
        [
            Algorithm::Md5,
            Algorithm::Md5Sess,
            Algorithm::Sha256,
            Algorithm::Sha256Sess,
        ]
        .into_iter()
        .find(|a| a.as_str().eq_ignore_ascii_case(s))
        .ok_or(DigestError::UnsupportedAlgorithm)
    }

    fn hash(self, parts: &[&str]) -> String {
        fn run<D: Digest>(parts: &[&str]) -> String {
            let mut d = D::new();
            for (i, p) in parts.iter().enumerate() {
                if i > 0 {
                    d.update(b":");
                }
                d.update(p.as_bytes());
            }
            hex(&d.finalize())
        }
        match self {
            Algorithm::Md5 | Algorithm::Md5Sess => run::<Md5>(parts),
            Algorithm::Sha256 | Algorithm::Sha256Sess => run::<Sha256>(parts),
        }
    }

    fn is_sess(self) -> bool {
        matches!(self, Algorithm::Md5Sess | Algorithm::Sha256Sess)
    }
}

impl From<DigestAlgorithm> for Algorithm {
    fn from(a: DigestAlgorithm) -> Self {
        match a {
            DigestAlgorithm::Md5 => Algorithm::Md5,
            DigestAlgorithm::Sha256 => Algorithm::Sha256,
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

fn unhex(s: &str, out: &mut [u8]) -> Option<()> {
    let b = s.as_bytes();
    if b.len() != out.len() * 2 {
        return None;
    }
    for (o, pair) in out.iter_mut().zip(b.chunks_exact(2)) {
        let hi = (pair.first()?.to_ascii_lowercase() as char).to_digit(16)?;
        let lo = (pair.get(1)?.to_ascii_lowercase() as char).to_digit(16)?;
        *o = (hi * 16 + lo) as u8;
    }
    Some(())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DigestError {
    #[error("not a Digest header")]
    NotDigest,
    #[error("malformed digest header")]
    Malformed,
    #[error("digest header lacks `{0}`")]
    Missing(&'static str),
    #[error("unsupported digest algorithm")]
    UnsupportedAlgorithm,
    #[error("challenge offers only qop values other than auth")]
    UnsupportedQop,
}

/// Most parameters a digest header may carry; more is an attack or garbage.
const MAX_PARAMS: usize = 24;

/// `Digest name=value, name="quoted"` into its parameters (names lower-cased by comparison, values unescaped).
pub fn parse_params(value: &str) -> Result<Vec<(&str, String)>, DigestError> {
    let v = value.trim_start();
    let (scheme, mut rest) =
        v.split_at(v.find(|c: char| c.is_ascii_whitespace()).unwrap_or(v.len()));
    if !scheme.eq_ignore_ascii_case("Digest") {
        return Err(DigestError::NotDigest);
    }
    let mut out = Vec::new();
    loop {
        rest = rest.trim_start_matches(|c: char| c.is_ascii_whitespace() || c == ',');
        if rest.is_empty() {
            break;
        }
        if out.len() == MAX_PARAMS {
            return Err(DigestError::Malformed);
        }
        let eq = rest.find('=').ok_or(DigestError::Malformed)?;
        let name = rest.get(..eq).ok_or(DigestError::Malformed)?.trim();
        if name.is_empty()
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(DigestError::Malformed);
        }
        rest = rest
            .get(eq + 1..)
            .ok_or(DigestError::Malformed)?
            .trim_start();
        let val = if let Some(q) = rest.strip_prefix('"') {
            let mut s = String::new();
            let mut chars = q.char_indices();
            let mut end = None;
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => match chars.next() {
                        Some((_, e)) => s.push(e),
                        None => return Err(DigestError::Malformed),
                    },
                    '"' => {
                        end = Some(i);
                        break;
                    }
                    c => s.push(c),
                }
            }
            let end = end.ok_or(DigestError::Malformed)?;
            rest = q.get(end + 1..).ok_or(DigestError::Malformed)?;
            s
        } else {
            let end = rest
                .find(|c: char| c == ',' || c.is_ascii_whitespace())
                .unwrap_or(rest.len());
            let (tok, r) = rest.split_at(end);
            rest = r;
            tok.to_owned()
        };
        let after = rest.trim_start();
        if !(after.is_empty() || after.starts_with(',')) {
            return Err(DigestError::Malformed);
        }
        out.push((name, val));
    }
    Ok(out)
}

fn get<'p>(params: &'p [(&str, String)], name: &str) -> Option<&'p str> {
    params
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// A parsed `WWW-Authenticate` / `Proxy-Authenticate` digest challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    pub realm: String,
    pub nonce: String,
    pub opaque: Option<String>,
    pub algorithm: Algorithm,
    /// The server offered `qop=auth` (otherwise the RFC 2069 form without cnonce/nc is used).
    pub qop_auth: bool,
    pub stale: bool,
}

impl Challenge {
    pub fn parse(value: &str) -> Result<Self, DigestError> {
        let p = parse_params(value)?;
        let qop = get(&p, "qop");
        let qop_auth =
            qop.is_some_and(|q| q.split(',').any(|x| x.trim().eq_ignore_ascii_case("auth")));
        if qop.is_some() && !qop_auth {
            return Err(DigestError::UnsupportedQop);
        }
        Ok(Challenge {
            realm: get(&p, "realm")
                .ok_or(DigestError::Missing("realm"))?
                .to_owned(),
            nonce: get(&p, "nonce")
                .ok_or(DigestError::Missing("nonce"))?
                .to_owned(),
            opaque: get(&p, "opaque").map(str::to_owned),
            algorithm: get(&p, "algorithm").map_or(Ok(Algorithm::Md5), Algorithm::parse)?,
            qop_auth,
            stale: get(&p, "stale").is_some_and(|s| s.eq_ignore_ascii_case("true")),
        })
    }
}

/// What the client supplies besides the challenge.
#[derive(Debug, Clone, Copy)]
pub struct ClientRequest<'a> {
    pub username: &'a str,
    pub password: &'a str,
    pub method: &'a str,
    pub uri: &'a str,
    /// Fresh random per challenge (the caller's randomness).
    pub cnonce: &'a str,
    /// How many requests this nonce has signed, starting at 1.
    pub nc: u32,
}

fn quote(s: &str) -> String {
    let mut o = String::with_capacity(s.len() + 2);
    o.push('"');
    for c in s.chars() {
        if c == '"' || c == '\\' {
            o.push('\\');
        }
        o.push(c);
    }
    o.push('"');
    o
}

/// `user` is (username, realm, password).
fn compute(
    alg: Algorithm,
    user: [&str; 3],
    nonce: &str,
    method: &str,
    uri: &str,
    qop: Option<(&str, &str)>,
) -> String {
    let mut ha1 = alg.hash(&user);
    if alg.is_sess() {
        ha1 = alg.hash(&[&ha1, nonce, qop.map_or("", |q| q.1)]);
    }
    let ha2 = alg.hash(&[method, uri]);
    match qop {
        Some((nc, cnonce)) => alg.hash(&[&ha1, nonce, nc, cnonce, "auth", &ha2]),
        None => alg.hash(&[&ha1, nonce, &ha2]),
    }
}

/// The `Authorization` / `Proxy-Authorization` header value answering `ch`.
pub fn authorization(ch: &Challenge, r: &ClientRequest<'_>) -> String {
    let nc = format!("{:08x}", r.nc);
    let qop = ch.qop_auth.then_some((nc.as_str(), r.cnonce));
    let response = compute(
        ch.algorithm,
        [r.username, &ch.realm, r.password],
        &ch.nonce,
        r.method,
        r.uri,
        qop,
    );
    let mut h = format!(
        "Digest username={}, realm={}, nonce={}, uri={}, response=\"{response}\", algorithm={}",
        quote(r.username),
        quote(&ch.realm),
        quote(&ch.nonce),
        quote(r.uri),
        ch.algorithm.as_str()
    );
    if ch.qop_auth {
        let _ = write!(h, ", qop=auth, nc={nc}, cnonce={}", quote(r.cnonce));
    }
    if let Some(o) = &ch.opaque {
        let _ = write!(h, ", opaque={}", quote(o));
    }
    h
}

/// Why the client side will not answer a challenge.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ClientAuthError {
    #[error("no usable digest challenge: {0}")]
    Header(#[from] DigestError),
    #[error("challenge for a realm we have no credentials for")]
    OtherRealm,
    /// Challenged again (not `stale`) right after answering: the credentials are wrong; stop, do not loop.
    #[error("credentials rejected")]
    Rejected,
    #[error("no challenge given")]
    NoChallenge,
}

/// A trunk's outbound credentials and the challenge they currently answer (one per dialog or per trunk:
/// the caller decides). Counts `nc` for requests that reuse a nonce.
#[derive(Debug, Clone)]
pub struct DigestClient {
    creds: Credentials,
    current: Option<Challenge>,
    nc: u32,
}

impl DigestClient {
    pub fn new(creds: &Credentials) -> Self {
        DigestClient {
            creds: creds.clone(),
            current: None,
            nc: 0,
        }
    }

    /// A 401/407 arrived with these `WWW-Authenticate`/`Proxy-Authenticate` values, in header order. The first
    /// usable one is taken (RFC 8760: the server lists its preferred algorithm first).
    pub fn on_challenge(&mut self, values: &[&str]) -> Result<(), ClientAuthError> {
        let mut last_err = ClientAuthError::NoChallenge;
        for v in values {
            match Challenge::parse(v) {
                Ok(ch) => {
                    if self.creds.realm.as_ref().is_some_and(|r| *r != ch.realm) {
                        last_err = ClientAuthError::OtherRealm;
                        continue;
                    }
                    if self.nc > 0 && !ch.stale {
                        // Give up on this request; the next one starts afresh.
                        self.current = None;
                        self.nc = 0;
                        return Err(ClientAuthError::Rejected);
                    }
                    self.current = Some(ch);
                    self.nc = 0;
                    return Ok(());
                }
                Err(e) => last_err = ClientAuthError::Header(e),
            }
        }
        Err(last_err)
    }

    /// The credentials header for a request, or `None` before any challenge. Each call uses the next `nc`.
    pub fn authorization(&mut self, method: &str, uri: &str, cnonce: &str) -> Option<String> {
        let ch = self.current.as_ref()?;
        self.nc = self.nc.saturating_add(1);
        Some(authorization(
            ch,
            &ClientRequest {
                username: &self.creds.username,
                password: &self.creds.password,
                method,
                uri,
                cnonce,
                nc: self.nc,
            },
        ))
    }

    /// The request was accepted: a later 401 for a fresh nonce is a new challenge, not a rejection.
    pub fn on_success(&mut self) {
        self.nc = 0;
        self.current = None;
    }
}

/// Why a request's credentials were refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("bad Authorization header: {0}")]
    Header(#[from] DigestError),
    #[error("credentials for another realm")]
    WrongRealm,
    #[error("algorithm differs from the challenge")]
    AlgorithmMismatch,
    #[error("nonce was not issued by us")]
    BadNonce,
    #[error("digest uri differs from the request-URI")]
    UriMismatch,
    #[error("qop=auth with cnonce and nc required")]
    QopRequired,
    #[error("unknown user")]
    UnknownUser,
    #[error("wrong response (password)")]
    BadResponse,
    /// Correct credentials on an expired nonce: challenge again with `stale=true`.
    #[error("nonce expired")]
    Stale,
    #[error("nonce count replayed")]
    Replay,
}

/// Nonces whose `nc` is tracked at once; beyond it (after dropping expired ones) new nonces count as stale.
const MAX_TRACKED_NONCES: usize = 100_000;
/// A nonce timestamped this far in the future (clock step on another instance) is still accepted.
const CLOCK_SKEW_S: u64 = 60;

/// Issues and verifies digest challenges for one trunk.
#[derive(Debug, Clone)]
pub struct DigestServer {
    realm: String,
    algorithm: Algorithm,
    ttl_s: u64,
    secret: Vec<u8>,
    users: Vec<User>,
    /// nonce -> (issued at, highest nc seen).
    seen: HashMap<[u8; 24], (u64, u32)>,
}

impl DigestServer {
    /// `secret`: random bytes from the caller (at least 16), shared by instances that should accept each
    /// other's nonces.
    pub fn new(auth: &InboundAuth, secret: &[u8]) -> Self {
        DigestServer {
            realm: auth.realm.clone(),
            algorithm: auth.algorithm.into(),
            ttl_s: u64::from(auth.nonce_ttl_s),
            secret: secret.to_vec(),
            users: auth.users.clone(),
            seen: HashMap::new(),
        }
    }

    fn tag(&self, ts: u64) -> [u8; 16] {
        let mut out = [0u8; 16];
        // HMAC takes keys of any length, so this cannot fail.
        if let Ok(mut m) = Hmac::<Sha256>::new_from_slice(&self.secret) {
            m.update(&ts.to_be_bytes());
            m.update(self.realm.as_bytes());
            let full = m.finalize().into_bytes();
            out.copy_from_slice(&full[..16]);
        }
        out
    }

    fn nonce(&self, ts: u64) -> String {
        let mut raw = [0u8; 24];
        raw[..8].copy_from_slice(&ts.to_be_bytes());
        raw[8..].copy_from_slice(&self.tag(ts));
        hex(&raw)
    }

    /// The `WWW-Authenticate` / `Proxy-Authenticate` value; `stale` after [`AuthError::Stale`].
    pub fn challenge(&self, now_unix_s: u64, stale: bool) -> String {
        format!(
            "Digest realm={}, nonce=\"{}\", algorithm={}, qop=\"auth\"{}",
            quote(&self.realm),
            self.nonce(now_unix_s),
            self.algorithm.as_str(),
            if stale { ", stale=true" } else { "" }
        )
    }

    /// Checks an `Authorization` value for a request with `method` and `request_uri`. Returns the user name.
    pub fn verify(
        &mut self,
        authorization: &str,
        method: &str,
        request_uri: &str,
        now_unix_s: u64,
    ) -> Result<String, AuthError> {
        let p = parse_params(authorization)?;
        let field = |n: &'static str| get(&p, n).ok_or(AuthError::Header(DigestError::Missing(n)));
        let username = field("username")?;
        if field("realm")? != self.realm {
            return Err(AuthError::WrongRealm);
        }
        let alg = get(&p, "algorithm").map_or(Ok(Algorithm::Md5), Algorithm::parse)?;
        if alg != self.algorithm {
            return Err(AuthError::AlgorithmMismatch);
        }
        let nonce = field("nonce")?;
        let mut raw = [0u8; 24];
        unhex(nonce, &mut raw).ok_or(AuthError::BadNonce)?;
        let mut ts_bytes = [0u8; 8];
        ts_bytes.copy_from_slice(&raw[..8]);
        let ts = u64::from_be_bytes(ts_bytes);
        let mut m =
            Hmac::<Sha256>::new_from_slice(&self.secret).map_err(|_| AuthError::BadNonce)?;
        m.update(&ts_bytes);
        m.update(self.realm.as_bytes());
        m.verify_truncated_left(&raw[8..])
            .map_err(|_| AuthError::BadNonce)?;
        if field("uri")? != request_uri {
            return Err(AuthError::UriMismatch);
        }
        if !get(&p, "qop").is_some_and(|q| q.eq_ignore_ascii_case("auth")) {
            return Err(AuthError::QopRequired);
        }
        let cnonce = get(&p, "cnonce").ok_or(AuthError::QopRequired)?;
        let nc_str = get(&p, "nc").ok_or(AuthError::QopRequired)?;
        let nc = (nc_str.len() == 8)
            .then(|| u32::from_str_radix(nc_str, 16).ok())
            .flatten()
            .ok_or(AuthError::QopRequired)?;
        let user = self
            .users
            .iter()
            .find(|u| u.username == username)
            .ok_or(AuthError::UnknownUser)?;
        let expected = compute(
            alg,
            [username, &self.realm, &user.password],
            nonce,
            method,
            request_uri,
            Some((nc_str, cnonce)),
        );
        let given = field("response")?.to_ascii_lowercase();
        if !ct_eq(expected.as_bytes(), given.as_bytes()) {
            return Err(AuthError::BadResponse);
        }
        if now_unix_s > ts.saturating_add(self.ttl_s)
            || ts > now_unix_s.saturating_add(CLOCK_SKEW_S)
        {
            return Err(AuthError::Stale);
        }
        if !self.seen.contains_key(&raw) && self.seen.len() >= MAX_TRACKED_NONCES {
            let ttl = self.ttl_s;
            self.seen
                .retain(|_, (t, _)| t.saturating_add(ttl) >= now_unix_s);
            if self.seen.len() >= MAX_TRACKED_NONCES {
                return Err(AuthError::Stale);
            }
        }
        let entry = self.seen.entry(raw).or_insert((ts, 0));
        if nc <= entry.1 {
            return Err(AuthError::Replay);
        }
        entry.1 = nc;
        Ok(username.to_owned())
    }

    /// Forgets nonces that have expired (call from a periodic timer).
    pub fn expire(&mut self, now_unix_s: u64) {
        let ttl = self.ttl_s;
        self.seen
            .retain(|_, (t, _)| t.saturating_add(ttl) >= now_unix_s);
    }
}

fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn rfc2617_example() {
        let ch = Challenge::parse(
            r#"Digest realm="testrealm@host.com", qop="auth,auth-int", nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", opaque="5ccc069c403ebaf9f0171e9517f40e41""#,
        )
        .unwrap();
        assert!(ch.qop_auth);
        let h = authorization(
            &ch,
            &ClientRequest {
                username: "Mufasa",
                password: "Circle Of Life",
                method: "GET",
                uri: "/dir/index.html",
                cnonce: "0a4f113b",
                nc: 1,
            },
        );
        assert!(
            h.contains(r#"response="6629fae49393a05397450978507c4ef1""#),
            "{h}"
        );
        assert!(h.contains("nc=00000001"));
        assert!(h.contains(r#"opaque="5ccc069c403ebaf9f0171e9517f40e41""#));
    }

    fn rfc7616(alg: &str) -> String {
        let ch = Challenge::parse(&format!(
            r#"Digest realm="http-auth@example.org", qop="auth, auth-int", algorithm={alg}, nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v", opaque="FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS""#
        ))
        .unwrap();
        authorization(
            &ch,
            &ClientRequest {
                username: "Mufasa",
                password: "Circle of Life",
                method: "GET",
                uri: "/dir/index.html",
                cnonce: "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ",
                nc: 1,
            },
        )
    }

    #[test]
    fn rfc7616_examples() {
        assert!(rfc7616("MD5").contains(r#"response="8ca523f5e9506fed4657c9700eebdbec""#));
        assert!(rfc7616("SHA-256").contains(
            r#"response="753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1""#
        ));
    }

    #[test]
    fn challenge_parsing_errors() {
        assert_eq!(
            Challenge::parse("Basic realm=\"x\""),
            Err(DigestError::NotDigest)
        );
        assert_eq!(
            Challenge::parse("Digest nonce=\"n\""),
            Err(DigestError::Missing("realm"))
        );
        assert_eq!(
            Challenge::parse("Digest realm=\"x, nonce=1"),
            Err(DigestError::Malformed)
        );
        assert_eq!(
            Challenge::parse("Digest realm=x, nonce=n, algorithm=SHA-512-256"),
            Err(DigestError::UnsupportedAlgorithm)
        );
        assert_eq!(
            Challenge::parse("Digest realm=x, nonce=n, qop=\"auth-int\""),
            Err(DigestError::UnsupportedQop)
        );
        let c = Challenge::parse("digest realm=\"a\\\"b\",nonce=n,stale=TRUE").unwrap();
        assert_eq!(c.realm, "a\"b");
        assert!(c.stale && !c.qop_auth);
        assert_eq!(c.algorithm, Algorithm::Md5);
    }

    fn server(alg: DigestAlgorithm) -> DigestServer {
        DigestServer::new(
            &InboundAuth {
                realm: "sbc.example.com".into(),
                users: vec![User {
                    username: "pbx".into(),
                    password: "s3cret".into(),
                }],
                nonce_ttl_s: 300,
                algorithm: alg,
            },
            b"0123456789abcdef0123456789abcdef",
        )
    }

    fn answer(chal: &str, password: &str, nc: u32) -> String {
        let ch = Challenge::parse(chal).unwrap();
        authorization(
            &ch,
            &ClientRequest {
                username: "pbx",
                password,
                method: "INVITE",
                uri: "sip:+18005551234@sbc.example.com",
                cnonce: "abc",
                nc,
            },
        )
    }

    #[test]
    fn server_round_trip_stale_and_replay() {
        for alg in [DigestAlgorithm::Md5, DigestAlgorithm::Sha256] {
            let mut s = server(alg);
            let uri = "sip:+18005551234@sbc.example.com";
            let chal = s.challenge(1000, false);
            let a1 = answer(&chal, "s3cret", 1);
            assert_eq!(s.verify(&a1, "INVITE", uri, 1001).as_deref(), Ok("pbx"));
            assert_eq!(s.verify(&a1, "INVITE", uri, 1002), Err(AuthError::Replay));
            assert_eq!(
                s.verify(&answer(&chal, "s3cret", 2), "INVITE", uri, 1002)
                    .as_deref(),
                Ok("pbx")
            );
            assert_eq!(
                s.verify(&answer(&chal, "wrong", 3), "INVITE", uri, 1002),
                Err(AuthError::BadResponse)
            );
            assert_eq!(
                s.verify(&answer(&chal, "s3cret", 3), "BYE", uri, 1002),
                Err(AuthError::BadResponse)
            );
            assert_eq!(
                s.verify(&answer(&chal, "s3cret", 3), "INVITE", "sip:x@y", 1002),
                Err(AuthError::UriMismatch)
            );
            assert_eq!(
                s.verify(&answer(&chal, "s3cret", 4), "INVITE", uri, 1301),
                Err(AuthError::Stale)
            );
            assert!(s.challenge(1301, true).ends_with("stale=true"));
            // A nonce forged by flipping its timestamp fails the HMAC.
            let forged = chal.replace("nonce=\"00000000000003e8", "nonce=\"00000000000003e9");
            assert_ne!(forged, chal);
            assert_eq!(
                s.verify(&answer(&forged, "s3cret", 1), "INVITE", uri, 1001),
                Err(AuthError::BadNonce)
            );
            s.expire(10_000);
            assert!(s.seen.is_empty());
        }
    }

    #[test]
    fn server_rejects_other_realms_and_users() {
        let mut s = server(DigestAlgorithm::Md5);
        let chal = s.challenge(1000, false).replace("sbc.example.com", "evil");
        assert_eq!(
            s.verify(
                &answer(&chal, "s3cret", 1),
                "INVITE",
                "sip:+18005551234@sbc.example.com",
                1000
            ),
            Err(AuthError::WrongRealm)
        );
        let chal = s.challenge(1000, false);
        let a = answer(&chal, "s3cret", 1).replace("username=\"pbx\"", "username=\"eve\"");
        assert_eq!(
            s.verify(&a, "INVITE", "sip:+18005551234@sbc.example.com", 1000),
            Err(AuthError::UnknownUser)
        );
        let a = answer(&chal, "s3cret", 1).replace("algorithm=MD5", "algorithm=SHA-256");
        assert_eq!(
            s.verify(&a, "INVITE", "sip:+18005551234@sbc.example.com", 1000),
            Err(AuthError::AlgorithmMismatch)
        );
    }

    #[test]
    fn client_answers_once_and_stops_on_rejection() {
        let mut srv = server(DigestAlgorithm::Sha256);
        let uri = "sip:+18005551234@sbc.example.com";
        let mut c = DigestClient::new(&Credentials {
            username: "pbx".into(),
            password: "s3cret".into(),
            realm: Some("sbc.example.com".into()),
        });
        assert_eq!(c.authorization("INVITE", uri, "x"), None);
        let other = "Digest realm=\"elsewhere\", nonce=\"n\", qop=\"auth\"";
        assert_eq!(c.on_challenge(&[other]), Err(ClientAuthError::OtherRealm));
        let chal = srv.challenge(1000, false);
        c.on_challenge(&["Basic realm=x", other, &chal]).unwrap();
        let a1 = c.authorization("INVITE", uri, "cn").unwrap();
        assert!(a1.contains("nc=00000001"));
        assert_eq!(srv.verify(&a1, "INVITE", uri, 1000).as_deref(), Ok("pbx"));
        let a2 = c.authorization("BYE", uri, "cn").unwrap();
        assert!(a2.contains("nc=00000002"));
        assert_eq!(srv.verify(&a2, "BYE", uri, 1000).as_deref(), Ok("pbx"));
        // Challenged again without stale: wrong credentials, do not answer again.
        assert_eq!(
            c.on_challenge(&[&srv.challenge(1001, false)]),
            Err(ClientAuthError::Rejected)
        );
        // A stale challenge is answered with the fresh nonce.
        c.on_challenge(&[&chal]).unwrap();
        c.authorization("INVITE", uri, "cn").unwrap();
        c.on_challenge(&[&srv.challenge(2000, true)]).unwrap();
        let a3 = c.authorization("INVITE", uri, "cn").unwrap();
        assert_eq!(srv.verify(&a3, "INVITE", uri, 2000).as_deref(), Ok("pbx"));
    }

    proptest! {
        /// Untrusted header values never panic the parser or the verifier.
        #[test]
        fn arbitrary_headers_do_not_panic(s in "(Digest |digest |Basic )?[ -~]{0,120}") {
            let _ = Challenge::parse(&s);
            let mut srv = server(DigestAlgorithm::Sha256);
            let _ = srv.verify(&s, "INVITE", "sip:a@b", 0);
        }

        #[test]
        fn quoted_values_round_trip(v in "[ -~]{0,40}") {
            let h = format!("Digest realm={}, nonce=n", quote(&v));
            prop_assert_eq!(Challenge::parse(&h).unwrap().realm, v);
        }
    }
}
