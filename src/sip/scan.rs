//! Byte-level building blocks shared by the header and URI parsers.
//!
//! Header values are handed over as raw spans that may still contain folded line breaks, so every whitespace
//! skip here treats CR and LF like SP and HTAB: folding was already checked when the header section was split.

/// Character classes, one table lookup per byte on the hot path.
pub(crate) const TOKEN: u8 = 1;
pub(crate) const LWS: u8 = 2;
/// May appear in a parameter name or unquoted value: the union of URI `paramchar` and header `gen-value`
/// characters (escaped UTF-8 included), none of the delimiters.
pub(crate) const PARAM: u8 = 4;
/// Hostname, IPv4 or port characters.
pub(crate) const HOST: u8 = 8;
/// May appear unescaped in a URI of any scheme (no whitespace, controls, `<`, `>`, `"`).
pub(crate) const URI: u8 = 16;

const fn class_of(b: u8) -> u8 {
    let mut c = 0;
    if b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'-' | b'.' | b'!' | b'%' | b'*' | b'_' | b'+' | b'`' | b'\'' | b'~'
        )
    {
        c |= TOKEN;
    }
    if matches!(b, b' ' | b'\t' | b'\r' | b'\n') {
        c |= LWS;
    }
    if b > b' '
        && b != 0x7f
        && !matches!(
            b,
            b';' | b',' | b'"' | b'<' | b'>' | b'=' | b'?' | b'@' | b'\\'
        )
    {
        c |= PARAM;
    }
    if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_') {
        c |= HOST;
    }
    if b > b' ' && b != 0x7f && !matches!(b, b'<' | b'>' | b'"') {
        c |= URI;
    }
    c
}

static CLASS: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = class_of(i as u8);
        i += 1;
    }
    t
};

#[inline(always)]
pub(crate) fn class(b: u8) -> u8 {
    CLASS[b as usize]
}

/// The byte at `i`, or 0 (a byte in no class) past the end: lets scanners run without bounds panics.
#[inline(always)]
pub(crate) fn at(s: &[u8], i: usize) -> u8 {
    s.get(i).copied().unwrap_or(0)
}

/// Advances `i` over bytes of class `c`.
#[inline(always)]
pub(crate) fn skip(s: &[u8], i: usize, c: u8) -> usize {
    i + s
        .get(i..)
        .map_or(0, |t| t.iter().take_while(|&&b| class(b) & c != 0).count())
}

/// `memchr` for the short slices inside one header value, where its setup costs more than a plain loop.
#[inline]
pub(crate) fn find(needle: u8, s: &[u8]) -> Option<usize> {
    s.iter().position(|&b| b == needle)
}

/// SP, HTAB, and the CR/LF of a fold inside a header value.
#[inline]
pub(crate) fn is_lws(b: u8) -> bool {
    class(b) & LWS != 0
}

/// RFC 3261 `token` characters.
#[inline]
pub(crate) fn is_token(b: u8) -> bool {
    class(b) & TOKEN != 0
}

pub(crate) fn is_token_str(s: &[u8]) -> bool {
    !s.is_empty() && s.iter().all(|&b| is_token(b))
}

pub(crate) fn trim_lws(mut s: &[u8]) -> &[u8] {
    while let [first, rest @ ..] = s {
        if is_lws(*first) {
            s = rest;
        } else {
            break;
        }
    }
    while let [rest @ .., last] = s {
        if is_lws(*last) {
            s = rest;
        } else {
            break;
        }
    }
    s
}

pub(crate) fn trim_lws_start(mut s: &[u8]) -> &[u8] {
    while let [first, rest @ ..] = s {
        if is_lws(*first) {
            s = rest;
        } else {
            break;
        }
    }
    s
}

/// Length of the quoted string at the start of `s` (which must begin with `"`), closing quote included.
/// `None` when the string is not terminated.
pub(crate) fn quoted_len(s: &[u8]) -> Option<usize> {
    if s.first() != Some(&b'"') {
        return None;
    }
    let mut i = 1;
    loop {
        i += memchr::memchr2(b'\\', b'"', s.get(i..)?)?;
        match at(s, i) {
            b'"' => return Some(i + 1),
            _ => i += 2,
        }
    }
}

/// Splits a header value at top-level commas: commas inside quoted strings and `<...>` do not split.
/// Elements are LWS-trimmed and may be empty (callers decide whether that is an error).
pub(crate) struct CommaSplit<'a> {
    rest: Option<&'a [u8]>,
}

impl<'a> CommaSplit<'a> {
    pub(crate) fn new(s: &'a [u8]) -> Self {
        CommaSplit { rest: Some(s) }
    }
}

impl<'a> Iterator for CommaSplit<'a> {
    type Item = &'a [u8];
    fn next(&mut self) -> Option<&'a [u8]> {
        let s = self.rest?;
        let mut i = 0;
        loop {
            let Some(off) = s
                .get(i..)
                .and_then(|t| memchr::memchr3(b',', b'"', b'<', t))
            else {
                self.rest = None;
                return Some(trim_lws(s));
            };
            i += off;
            match at(s, i) {
                b'"' => match s.get(i..).and_then(quoted_len) {
                    Some(n) => i += n,
                    // Unterminated quote: the rest is one element, its parser reports the fault.
                    None => {
                        self.rest = None;
                        return Some(trim_lws(s));
                    }
                },
                b'<' => match s.get(i..).and_then(|t| memchr::memchr(b'>', t)) {
                    Some(n) => i += n + 1,
                    None => {
                        self.rest = None;
                        return Some(trim_lws(s));
                    }
                },
                _ => {
                    self.rest = s.get(i + 1..);
                    return Some(trim_lws(s.get(..i).unwrap_or_default()));
                }
            }
        }
    }
}

/// Parses an unsigned decimal of at most `max`; `None` on empty input, a non-digit or overflow.
pub(crate) fn parse_u64(s: &[u8], max: u64) -> Option<u64> {
    if s.is_empty() {
        return None;
    }
    let mut v: u64 = 0;
    for &b in s {
        if !b.is_ascii_digit() {
            return None;
        }
        v = v.checked_mul(10)?.checked_add(u64::from(b - b'0'))?;
        if v > max {
            return None;
        }
    }
    Some(v)
}

/// Writes a decimal number without going through `fmt`.
pub(crate) fn push_u64(out: &mut Vec<u8>, mut v: u64) {
    let mut tmp = [0u8; 20];
    let mut i = tmp.len();
    loop {
        i -= 1;
        if let Some(slot) = tmp.get_mut(i) {
            *slot = b'0' + (v % 10) as u8;
        }
        v /= 10;
        if v == 0 || i == 0 {
            break;
        }
    }
    out.extend_from_slice(tmp.get(i..).unwrap_or_default());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comma_split_respects_quotes_and_angles() {
        let v: Vec<&[u8]> = CommaSplit::new(b"\"a,b\" <sip:x@y;p=1,2>;q=1 , <sip:z>,").collect();
        assert_eq!(
            v,
            vec![
                &b"\"a,b\" <sip:x@y;p=1,2>;q=1"[..],
                &b"<sip:z>"[..],
                &b""[..]
            ]
        );
    }

    #[test]
    fn quoted_escapes() {
        assert_eq!(quoted_len(b"\"a\\\"b\" x"), Some(6));
        assert_eq!(quoted_len(b"\"abc"), None);
        assert_eq!(quoted_len(b"\"ab\\"), None);
    }

    #[test]
    fn numbers() {
        assert_eq!(parse_u64(b"0068", 255), Some(68));
        assert_eq!(parse_u64(b"300", 255), None);
        assert_eq!(parse_u64(b"36893488147419103232", u64::MAX), None);
        let mut v = Vec::new();
        push_u64(&mut v, 0);
        v.push(b' ');
        push_u64(&mut v, 18446744073709551615);
        assert_eq!(v, b"0 18446744073709551615");
    }
}
