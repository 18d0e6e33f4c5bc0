//! URIs (`sip:`, `sips:`, `tel:`, any other scheme kept opaque), hosts, and `;name=value` parameter lists.

use super::scan::{HOST, LWS, PARAM, URI, at, class, find, is_lws, quoted_len, skip};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The URI is malformed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UriError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    Sip,
    Sips,
    Tel,
    /// Any other scheme (`http:`, `urn:`, ...): the URI is kept opaque.
    Other,
}

/// A host as written in a URI or a Via sent-by. IPv6 references are written with brackets and stored without.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Host<'a> {
    Domain(&'a [u8]),
    V4(Ipv4Addr),
    V6(Ipv6Addr),
}

impl Host<'_> {
    pub fn ip(&self) -> Option<IpAddr> {
        match *self {
            Host::Domain(_) => None,
            Host::V4(a) => Some(IpAddr::V4(a)),
            Host::V6(a) => Some(IpAddr::V6(a)),
        }
    }

    /// Writes the host as it belongs in a URI (IPv6 bracketed).
    pub fn write(&self, out: &mut Vec<u8>) {
        use std::io::Write;
        match *self {
            Host::Domain(d) => out.extend_from_slice(d),
            // Writing into a Vec cannot fail.
            Host::V4(a) => {
                let _ = write!(out, "{a}");
            }
            Host::V6(a) => {
                let _ = write!(out, "[{a}]");
            }
        }
    }
}

fn is_host_char(b: u8) -> bool {
    class(b) & HOST != 0
}

/// Parses `host` (a bare IPv4, a `[IPv6]` reference or a domain name), nothing else.
pub fn parse_host(s: &[u8]) -> Result<Host<'_>, UriError> {
    match s {
        [] => Err(UriError),
        [b'[', inner @ .., b']'] => {
            let txt = core::str::from_utf8(inner).map_err(|_| UriError)?;
            txt.parse::<Ipv6Addr>().map(Host::V6).map_err(|_| UriError)
        }
        [b'0'..=b'9', ..] if let Some(v4) = parse_ipv4(s) => {
            // The common case on a carrier trunk: an IPv4 literal, read in one pass. Anything
            // parse_ipv4 refuses takes the general path below, which gives the same verdict as before.
            Ok(Host::V4(v4))
        }
        _ => {
            // One pass: all host characters, note whether any is a letter or other non-IPv4 byte, and
            // remember where the top label starts (RFC 3261 25.1: it starts with a letter).
            let name = s.strip_suffix(b".").unwrap_or(s);
            let mut numeric = true;
            let mut top = 0;
            let mut prev_dot = true;
            for (i, &b) in name.iter().enumerate() {
                if !is_host_char(b) {
                    return Err(UriError);
                }
                if b == b'.' {
                    if prev_dot {
                        return Err(UriError);
                    }
                    prev_dot = true;
                    top = i + 1;
                } else {
                    prev_dot = false;
                    numeric &= b.is_ascii_digit();
                }
            }
            if numeric && name.len() == s.len() {
                return parse_ipv4(s).map(Host::V4).ok_or(UriError);
            }
            if prev_dot || !at(name, top).is_ascii_alphabetic() {
                return Err(UriError);
            }
            Ok(Host::Domain(s))
        }
    }
}

/// Dotted-quad IPv4 (four decimal octets, no leading zeros), without going through `str`.
pub fn parse_ipv4(s: &[u8]) -> Option<Ipv4Addr> {
    let mut octets = [0u8; 4];
    let mut n = 0usize;
    let mut val: u16 = 0;
    let mut digits = 0u8;
    for &b in s {
        match b {
            b'0'..=b'9' => {
                // No leading zeros, at most three digits, at most 255.
                if digits > 0 && val == 0 {
                    return None;
                }
                val = val * 10 + u16::from(b - b'0');
                digits += 1;
                if val > 255 {
                    return None;
                }
            }
            b'.' if digits > 0 => {
                *octets.get_mut(n)? = val as u8;
                n += 1;
                val = 0;
                digits = 0;
            }
            _ => return None,
        }
    }
    if digits == 0 || n != 3 {
        return None;
    }
    *octets.get_mut(3)? = val as u8;
    Some(Ipv4Addr::from(octets))
}

/// Parses `host [":" port]` and returns the host, the port and the number of bytes used. Stops at the first
/// byte that cannot belong to a hostport. LWS around the colon is accepted (Via sent-by allows it).
pub fn parse_hostport(s: &[u8]) -> Result<(Host<'_>, Option<u16>, usize), UriError> {
    let host_end = if s.first() == Some(&b'[') {
        find(b']', s).ok_or(UriError)? + 1
    } else {
        s.iter().position(|&b| !is_host_char(b)).unwrap_or(s.len())
    };
    let host = parse_host(s.get(..host_end).ok_or(UriError)?)?;
    let mut i = host_end;
    let after = s.get(i..).unwrap_or_default();
    let ws = after.iter().take_while(|&&b| is_lws(b)).count();
    if after.get(ws) == Some(&b':') {
        i += ws + 1;
        i += s
            .get(i..)
            .unwrap_or_default()
            .iter()
            .take_while(|&&b| is_lws(b))
            .count();
        let digits = s
            .get(i..)
            .unwrap_or_default()
            .iter()
            .take_while(|b| b.is_ascii_digit())
            .count();
        let port = s
            .get(i..i + digits)
            .and_then(|d| super::scan::parse_u64(d, u64::from(u16::MAX)))
            .ok_or(UriError)?;
        i += digits;
        Ok((host, Some(port as u16), i))
    } else {
        Ok((host, None, i))
    }
}

/// A `;name[=value]` list, kept as bytes and walked on demand. Used for URI parameters and header parameters;
/// LWS around `;` and `=` is skipped, quoted values are returned without their quotes (escapes left as they are).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Params<'a> {
    raw: &'a [u8],
}

/// One parameter. `value` is `None` for a bare name (`;lr`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Param<'a> {
    pub name: &'a [u8],
    pub value: Option<&'a [u8]>,
}

impl<'a> Params<'a> {
    /// `raw` is the text from the first `;` (included or not) to the end of the list.
    pub fn new(raw: &'a [u8]) -> Self {
        Params { raw }
    }

    pub fn raw(&self) -> &'a [u8] {
        self.raw
    }

    pub fn iter(&self) -> ParamIter<'a> {
        ParamIter { rest: self.raw }
    }

    /// The first parameter with this name (case-insensitive). `Some(None)` for a bare name.
    pub fn get(&self, name: &[u8]) -> Option<Option<&'a [u8]>> {
        self.iter()
            .find(|p| p.name.eq_ignore_ascii_case(name))
            .map(|p| p.value)
    }

    pub fn contains(&self, name: &[u8]) -> bool {
        self.get(name).is_some()
    }

    /// Every parameter has a non-empty name of token-like bytes and a well-formed value, and each is
    /// introduced by `;`.
    pub fn is_valid(&self) -> bool {
        let s = self.raw;
        let mut i = skip(s, 0, LWS);
        while i < s.len() {
            match scan_param(s, i) {
                Some((_, next)) => i = next,
                None => return false,
            }
        }
        true
    }
}

/// Scans one `; name [= value]` starting at `i` (which is at the `;`, possibly after LWS). Returns the
/// parameter and the index after it and its trailing LWS. `None` when malformed.
#[inline]
fn scan_param(s: &[u8], i: usize) -> Option<(Param<'_>, usize)> {
    if at(s, i) != b';' {
        return None;
    }
    let ns = skip(s, i + 1, LWS);
    let ne = skip(s, ns, PARAM);
    if ne == ns {
        return None;
    }
    let name = s.get(ns..ne)?;
    let mut j = skip(s, ne, LWS);
    let mut value = None;
    if at(s, j) == b'=' {
        let vs = skip(s, j + 1, LWS);
        if at(s, vs) == b'"' {
            let n = quoted_len(s.get(vs..)?)?;
            value = s.get(vs + 1..vs + n - 1);
            j = vs + n;
        } else {
            let ve = skip(s, vs, PARAM);
            if ve == vs {
                return None;
            }
            value = s.get(vs..ve);
            j = ve;
        }
        j = skip(s, j, LWS);
    }
    match at(s, j) {
        b';' => {}
        _ if j >= s.len() => {}
        _ => return None,
    }
    Some((Param { name, value }, j))
}

pub struct ParamIter<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for ParamIter<'a> {
    type Item = Param<'a>;
    fn next(&mut self) -> Option<Param<'a>> {
        let s = self.rest;
        let i = skip(s, 0, LWS);
        if i >= s.len() {
            return None;
        }
        match scan_param(s, i) {
            Some((p, next)) => {
                self.rest = s.get(next..).unwrap_or_default();
                Some(p)
            }
            None => {
                // Malformed lists are refused at parse time; an unvalidated one ends here.
                self.rest = &[];
                None
            }
        }
    }
}

/// A parsed URI. All fields borrow from the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Uri<'a> {
    /// The URI exactly as written.
    pub raw: &'a [u8],
    pub scheme: Scheme,
    /// The scheme as written (`sip`, `SIPS`, `urn`, ...).
    pub scheme_raw: &'a [u8],
    /// `sip`/`sips`: the user part (still %-escaped); `tel`: the number.
    pub user: Option<&'a [u8]>,
    pub password: Option<&'a [u8]>,
    /// `sip`/`sips` only.
    pub host: Option<Host<'a>>,
    pub port: Option<u16>,
    pub params: Params<'a>,
    /// The part after `?` (`sip`/`sips`), still escaped.
    pub headers: Option<&'a [u8]>,
    /// For other schemes: everything after the colon.
    pub opaque: &'a [u8],
}

impl<'a> Uri<'a> {
    pub fn parse(raw: &'a [u8]) -> Result<Uri<'a>, UriError> {
        // No URI scheme allows whitespace, angle brackets or quotes unescaped.
        if skip(raw, 0, URI) != raw.len() {
            return Err(UriError);
        }
        let colon = find(b':', raw).ok_or(UriError)?;
        let scheme_raw = raw.get(..colon).ok_or(UriError)?;
        match scheme_raw {
            [first, rest @ ..]
                if first.is_ascii_alphabetic()
                    && rest
                        .iter()
                        .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.')) => {
            }
            _ => return Err(UriError),
        }
        let rest = raw.get(colon + 1..).unwrap_or_default();
        let scheme = if scheme_raw.eq_ignore_ascii_case(b"sip") {
            Scheme::Sip
        } else if scheme_raw.eq_ignore_ascii_case(b"sips") {
            Scheme::Sips
        } else if scheme_raw.eq_ignore_ascii_case(b"tel") {
            Scheme::Tel
        } else {
            Scheme::Other
        };
        let mut uri = Uri {
            raw,
            scheme,
            scheme_raw,
            user: None,
            password: None,
            host: None,
            port: None,
            params: Params::default(),
            headers: None,
            opaque: rest,
        };
        match scheme {
            Scheme::Sip | Scheme::Sips => parse_sip_rest(&mut uri, rest)?,
            Scheme::Tel => {
                let end = find(b';', rest).unwrap_or(rest.len());
                let number = rest.get(..end).unwrap_or_default();
                if number.is_empty() {
                    return Err(UriError);
                }
                uri.user = Some(number);
                uri.params = Params::new(rest.get(end..).unwrap_or_default());
                if !uri.params.is_valid() {
                    return Err(UriError);
                }
            }
            Scheme::Other => {
                if rest.is_empty() {
                    return Err(UriError);
                }
            }
        }
        Ok(uri)
    }

    pub fn is_sip(&self) -> bool {
        matches!(self.scheme, Scheme::Sip | Scheme::Sips)
    }

    /// A URI parameter such as `transport`, `lr`, `maddr`, `user`.
    pub fn param(&self, name: &[u8]) -> Option<Option<&'a [u8]>> {
        self.params.get(name)
    }
}

fn parse_sip_rest<'a>(uri: &mut Uri<'a>, rest: &'a [u8]) -> Result<(), UriError> {
    // '@' cannot appear unescaped after the userinfo, so the first one ends it.
    let hostpart = match find(b'@', rest) {
        Some(at) => {
            let userinfo = rest.get(..at).unwrap_or_default();
            let (user, password) = match find(b':', userinfo) {
                Some(c) => (userinfo.get(..c).unwrap_or_default(), userinfo.get(c + 1..)),
                None => (userinfo, None),
            };
            if user.is_empty() {
                return Err(UriError);
            }
            uri.user = Some(user);
            uri.password = password;
            rest.get(at + 1..).unwrap_or_default()
        }
        None => rest,
    };
    let (host, port, used) = parse_hostport(hostpart)?;
    uri.host = Some(host);
    uri.port = port;
    let tail = hostpart.get(used..).unwrap_or_default();
    let (params, headers) = match find(b'?', tail) {
        Some(q) => (
            tail.get(..q).unwrap_or_default(),
            Some(tail.get(q + 1..).unwrap_or_default()),
        ),
        None => (tail, None),
    };
    match params.first() {
        None | Some(b';') => {}
        Some(_) => return Err(UriError),
    }
    uri.params = Params::new(params);
    if !uri.params.is_valid() {
        return Err(UriError);
    }
    if let Some(h) = headers
        && h.is_empty()
    {
        return Err(UriError);
    }
    uri.headers = headers;
    Ok(())
}

/// Appends `s` with `%XX` escapes decoded. `false` (and a partial write) on a malformed escape.
pub fn percent_decode_into(s: &[u8], out: &mut Vec<u8>) -> bool {
    let mut i = 0;
    while let Some(&b) = s.get(i) {
        if b == b'%' {
            let hex = |c: Option<&u8>| c.and_then(|c| (*c as char).to_digit(16));
            match (hex(s.get(i + 1)), hex(s.get(i + 2))) {
                (Some(h), Some(l)) => out.push((h * 16 + l) as u8),
                _ => return false,
            }
            i += 3;
        } else {
            out.push(b);
            i += 1;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sip_uri_full() {
        let u = Uri::parse(b"sips:alice:secret@Example.COM:5061;transport=tls;lr?subject=x&h=%20")
            .unwrap();
        assert_eq!(u.scheme, Scheme::Sips);
        assert_eq!(u.user, Some(&b"alice"[..]));
        assert_eq!(u.password, Some(&b"secret"[..]));
        assert_eq!(u.host, Some(Host::Domain(b"Example.COM")));
        assert_eq!(u.port, Some(5061));
        assert_eq!(u.param(b"TRANSPORT"), Some(Some(&b"tls"[..])));
        assert_eq!(u.param(b"lr"), Some(None));
        assert_eq!(u.param(b"maddr"), None);
        assert_eq!(u.headers, Some(&b"subject=x&h=%20"[..]));
    }

    #[test]
    fn ipv6_references() {
        let u = Uri::parse(b"sip:user@[2001:db8::10]:5070").unwrap();
        assert_eq!(u.host, Some(Host::V6("2001:db8::10".parse().unwrap())));
        assert_eq!(u.port, Some(5070));
        // RFC 5118 4.3: the last group is part of the address, not a port.
        let u = Uri::parse(b"sip:[2001:db8::10:5070]").unwrap();
        assert_eq!(u.host, Some(Host::V6("2001:db8::10:5070".parse().unwrap())));
        assert_eq!(u.port, None);
        let u = Uri::parse(b"sip:[::ffff:192.0.2.10]:19823").unwrap();
        assert_eq!(u.host, Some(Host::V6("::ffff:192.0.2.10".parse().unwrap())));
        // RFC 5118 4.10a and 4.2.
        assert!(Uri::parse(b"sip:user@[2001:db8:::192.0.2.1]").is_err());
        assert!(Uri::parse(b"sip:2001:db8::10").is_err());
        assert!(Uri::parse(b"sip:[2001:db8::10").is_err());
    }

    #[test]
    fn ipv4_and_port_bounds() {
        assert_eq!(parse_ipv4(b"255.255.255.255"), Some(Ipv4Addr::BROADCAST));
        for bad in [
            &b"1.2.3"[..],
            b"1.2.3.4.5",
            b"1.2.3.256",
            b"01.2.3.4",
            b"1..2.3",
            b"1.2.3.4.",
        ] {
            assert_eq!(parse_ipv4(bad), None, "{bad:?}");
        }
        let u = Uri::parse(b"sip:192.0.2.1:65535").unwrap();
        assert_eq!(u.host, Some(Host::V4(Ipv4Addr::new(192, 0, 2, 1))));
        assert!(Uri::parse(b"sip:192.0.2.1:65536").is_err());
        assert!(Uri::parse(b"sip:host:").is_err());
        assert!(Uri::parse(b"sip:host:12a").is_err());
    }

    #[test]
    fn tel_and_other_schemes() {
        let u = Uri::parse(b"tel:+1-201-555-0123;phone-context=example.com").unwrap();
        assert_eq!(u.scheme, Scheme::Tel);
        assert_eq!(u.user, Some(&b"+1-201-555-0123"[..]));
        assert_eq!(u.param(b"phone-context"), Some(Some(&b"example.com"[..])));
        let u = Uri::parse(b"soap.beep://192.0.2.103:3002").unwrap();
        assert_eq!(u.scheme, Scheme::Other);
        assert_eq!(u.opaque, b"//192.0.2.103:3002");
        assert!(Uri::parse(b"<sip:user@example.com>").is_err());
        assert!(Uri::parse(b"sip:user@example.com; lr").is_err());
        assert!(Uri::parse(b"1abc:x").is_err());
        assert!(Uri::parse(b"nocolon").is_err());
    }

    #[test]
    fn user_with_semicolons_and_escapes() {
        let u = Uri::parse(b"sip:user;par=u%40example.net@example.com").unwrap();
        assert_eq!(u.user, Some(&b"user;par=u%40example.net"[..]));
        assert_eq!(u.host, Some(Host::Domain(b"example.com")));
        let mut out = Vec::new();
        assert!(percent_decode_into(u.user.unwrap(), &mut out));
        assert_eq!(out, b"user;par=u@example.net");
        out.clear();
        assert!(percent_decode_into(b"null-%00-null", &mut out));
        assert_eq!(out, b"null-\0-null");
        out.clear();
        assert!(!percent_decode_into(b"%Z%45", &mut out));
    }

    #[test]
    fn params_with_lws_and_quotes() {
        let p = Params::new(b" ;   tag    = 1918181833n ; x=\"a;b\"; lr");
        let v: Vec<_> = p.iter().collect();
        assert_eq!(v.len(), 3);
        assert_eq!(p.get(b"tag"), Some(Some(&b"1918181833n"[..])));
        assert_eq!(p.get(b"x"), Some(Some(&b"a;b"[..])));
        assert!(p.is_valid());
        assert!(!Params::new(b";;").is_valid());
        assert!(!Params::new(b";a=").is_valid());
        assert!(!Params::new(b";a=\"x").is_valid());
    }
}
