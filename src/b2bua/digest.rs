//! Digest client (RFC 2617 / RFC 8760, MD5 and SHA-256, qop=auth or none): the Authorization value for a
//! request challenged by a carrier. `crate::routing` is to own digest auth (client and server) once it lands.
use md5::Md5;
use sha2::{Digest, Sha256};

use crate::sip::header::Auth;

/// Which hash a challenge asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Algo {
    Md5,
    Sha256,
}

fn hex(bytes: &[u8], out: &mut String) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for b in bytes {
        out.push(char::from(HEX[usize::from(b >> 4)]));
        out.push(char::from(HEX[usize::from(b & 15)]));
    }
}

fn h(algo: Algo, parts: &[&[u8]]) -> String {
    let mut s = String::with_capacity(64);
    match algo {
        Algo::Md5 => {
            let mut d = Md5::new();
            for (i, p) in parts.iter().enumerate() {
                if i > 0 {
                    d.update(b":");
                }
                d.update(p);
            }
            hex(&d.finalize(), &mut s);
        }
        Algo::Sha256 => {
            let mut d = Sha256::new();
            for (i, p) in parts.iter().enumerate() {
                if i > 0 {
                    d.update(b":");
                }
                d.update(p);
            }
            hex(&d.finalize(), &mut s);
        }
    }
    s
}

/// Answers `challenge` (a WWW-/Proxy-Authenticate value) for `method uri` with `user`/`password`.
/// `cnonce` must be fresh per answer. `None` when the challenge is not a Digest one we can answer.
pub fn answer(
    challenge: &[u8],
    method: &[u8],
    uri: &[u8],
    user: &str,
    password: &str,
    cnonce: &str,
) -> Option<String> {
    let auth = Auth::parse(challenge).ok()?;
    if !auth.is_digest() {
        return None;
    }
    let realm = auth.param(b"realm").unwrap_or_default();
    let nonce = auth.param(b"nonce")?;
    let algo_raw = auth.param(b"algorithm").unwrap_or(b"MD5");
    let algo = if algo_raw.eq_ignore_ascii_case(b"MD5") {
        Algo::Md5
    } else if algo_raw.eq_ignore_ascii_case(b"SHA-256") {
        Algo::Sha256
    } else {
        return None;
    };
    let qop_auth = auth
        .param(b"qop")
        .is_some_and(|q| q.split(|&b| b == b',').any(|t| t.trim_ascii() == b"auth"));
    let ha1 = h(algo, &[user.as_bytes(), realm, password.as_bytes()]);
    let ha2 = h(algo, &[method, uri]);
    let nc = b"00000001";
    let response = if qop_auth {
        h(
            algo,
            &[
                ha1.as_bytes(),
                nonce,
                nc,
                cnonce.as_bytes(),
                b"auth",
                ha2.as_bytes(),
            ],
        )
    } else {
        h(algo, &[ha1.as_bytes(), nonce, ha2.as_bytes()])
    };
    let lossy = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    let mut out = format!(
        "Digest username=\"{user}\", realm=\"{}\", nonce=\"{}\", uri=\"{}\", response=\"{response}\", algorithm={}",
        lossy(realm),
        lossy(nonce),
        lossy(uri),
        lossy(algo_raw),
    );
    if let Some(opaque) = auth.param(b"opaque") {
        out.push_str(&format!(", opaque=\"{}\"", lossy(opaque)));
    }
    if qop_auth {
        out.push_str(&format!(
            ", qop=auth, nc={}, cnonce=\"{cnonce}\"",
            lossy(nc)
        ));
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc2617_example() {
        // RFC 2617 3.5 (with qop=auth); the expected response is the one printed in the RFC.
        let ch = br#"Digest realm="testrealm@host.com", qop="auth,auth-int", nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", opaque="5ccc069c403ebaf9f0171e9517f40e41""#;
        let a = answer(
            ch,
            b"GET",
            b"/dir/index.html",
            "Mufasa",
            "Circle Of Life",
            "0a4f113b",
        )
        .unwrap();
        assert!(
            a.contains("response=\"6629fae49393a05397450978507c4ef1\""),
            "{a}"
        );
        assert!(a.contains("opaque=\"5ccc069c403ebaf9f0171e9517f40e41\""));
    }

    #[test]
    fn sha256_and_rejects() {
        let ch = br#"Digest realm="r", nonce="n", algorithm=SHA-256"#;
        let a = answer(ch, b"INVITE", b"sip:x@y", "u", "p", "c").unwrap();
        let ha1 = h(Algo::Sha256, &[b"u", b"r", b"p"]);
        let ha2 = h(Algo::Sha256, &[b"INVITE", b"sip:x@y"]);
        let want = h(Algo::Sha256, &[ha1.as_bytes(), b"n", ha2.as_bytes()]);
        assert!(a.contains(&want));
        assert!(answer(b"Basic realm=\"r\"", b"INVITE", b"sip:x", "u", "p", "c").is_none());
        assert!(answer(b"Digest realm=\"r\"", b"INVITE", b"sip:x", "u", "p", "c").is_none());
    }
}
