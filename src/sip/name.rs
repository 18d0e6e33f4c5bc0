//! Header names: the ones the SBC reads get a variant, everything else is `Other` and passes through as bytes.

macro_rules! header_names {
    ($($var:ident => $canon:literal),* $(,)?) => {
        /// A header the SBC knows by name (long or compact form, any case). `Other` covers the rest.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[repr(u8)]
        pub enum HeaderName {
            $($var,)*
            Other,
        }

        impl HeaderName {
            /// Every known name (not `Other`), for tables indexed by `as usize`.
            pub const KNOWN: &'static [HeaderName] = &[$(HeaderName::$var,)*];
            /// Number of variants including `Other`.
            pub const COUNT: usize = Self::KNOWN.len() + 1;

            /// The long form as RFC 3261 and its extensions spell it.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(HeaderName::$var => $canon,)*
                    HeaderName::Other => "Other",
                }
            }

            pub(crate) fn missing_phrase(self) -> &'static str {
                match self {
                    $(HeaderName::$var => concat!("Missing ", $canon),)*
                    HeaderName::Other => "Missing Header",
                }
            }

            pub(crate) fn invalid_phrase(self) -> &'static str {
                match self {
                    $(HeaderName::$var => concat!("Invalid ", $canon),)*
                    HeaderName::Other => "Invalid Header",
                }
            }

            pub(crate) fn duplicate_phrase(self) -> &'static str {
                match self {
                    $(HeaderName::$var => concat!("Multiple ", $canon, " Values"),)*
                    HeaderName::Other => "Multiple Header Values",
                }
            }

            pub(crate) fn range_phrase(self) -> &'static str {
                match self {
                    $(HeaderName::$var => concat!($canon, " Out Of Range"),)*
                    HeaderName::Other => "Header Value Out Of Range",
                }
            }
        }
    };
}

header_names! {
    Via => "Via",
    From => "From",
    To => "To",
    CallId => "Call-ID",
    CSeq => "CSeq",
    MaxForwards => "Max-Forwards",
    Contact => "Contact",
    Route => "Route",
    RecordRoute => "Record-Route",
    ContentLength => "Content-Length",
    ContentType => "Content-Type",
    ContentEncoding => "Content-Encoding",
    Expires => "Expires",
    SessionExpires => "Session-Expires",
    MinSe => "Min-SE",
    ReferTo => "Refer-To",
    ReferredBy => "Referred-By",
    Replaces => "Replaces",
    Authorization => "Authorization",
    ProxyAuthorization => "Proxy-Authorization",
    WwwAuthenticate => "WWW-Authenticate",
    ProxyAuthenticate => "Proxy-Authenticate",
    UserAgent => "User-Agent",
    Server => "Server",
    Supported => "Supported",
    Require => "Require",
    ProxyRequire => "Proxy-Require",
    PAssertedIdentity => "P-Asserted-Identity",
    Reason => "Reason",
    Allow => "Allow",
    Subject => "Subject",
    Event => "Event",
    AllowEvents => "Allow-Events",
    Date => "Date",
}

/// Eight bytes of `s` from `off` as a little-endian word, zero-padded past the end.
#[inline(always)]
fn word(s: &[u8], off: usize) -> u64 {
    let mut w = [0u8; 8];
    if let Some(t) = s.get(off..) {
        let n = t.len().min(8);
        if let (Some(dst), Some(src)) = (w.get_mut(..n), t.get(..n)) {
            dst.copy_from_slice(src);
        }
    }
    u64::from_le_bytes(w)
}

/// Case-insensitive equality of `a` with `lower`, a lowercase literal of letters and `-`, eight bytes at a
/// time. Only letter positions (bit 0x40 set in the literal) get the case bit folded in, so `-` matches only
/// `-` and the result is exactly `a.eq_ignore_ascii_case(lower)`.
#[inline(always)]
fn eq(a: &[u8], lower: &[u8]) -> bool {
    if a.len() != lower.len() {
        return false;
    }
    let mut off = 0;
    while off < lower.len() {
        let lit = word(lower, off);
        let fold = (lit & 0x4040_4040_4040_4040) >> 1;
        if word(a, off) | fold != lit {
            return false;
        }
        off += 8;
    }
    true
}

impl HeaderName {
    /// Classifies a raw header name (long or compact form, case-insensitive).
    ///
    /// Dispatches on length and first byte so that a typical INVITE's ~25 headers cost one or two
    /// comparisons each rather than a scan of the whole table.
    pub fn classify(name: &[u8]) -> HeaderName {
        use HeaderName::*;
        let Some(&first) = name.first() else {
            return Other;
        };
        let f = first.to_ascii_lowercase();
        match name.len() {
            1 => match f {
                b'v' => Via,
                b'f' => From,
                b't' => To,
                b'i' => CallId,
                b'm' => Contact,
                b'l' => ContentLength,
                b'c' => ContentType,
                b'e' => ContentEncoding,
                b'k' => Supported,
                b's' => Subject,
                b'o' => Event,
                b'r' => ReferTo,
                b'u' => AllowEvents,
                b'x' => SessionExpires,
                b'b' => ReferredBy,
                _ => Other,
            },
            2 if eq(name, b"to") => To,
            3 if eq(name, b"via") => Via,
            4 => match f {
                b'f' if eq(name, b"from") => From,
                b'c' if eq(name, b"cseq") => CSeq,
                b'd' if eq(name, b"date") => Date,
                _ => Other,
            },
            5 => match f {
                b'r' if eq(name, b"route") => Route,
                b'a' if eq(name, b"allow") => Allow,
                b'e' if eq(name, b"event") => Event,
                _ => Other,
            },
            6 => match f {
                b'm' if eq(name, b"min-se") => MinSe,
                b'r' if eq(name, b"reason") => Reason,
                b's' if eq(name, b"server") => Server,
                _ => Other,
            },
            7 => match f {
                b'c' if eq(name, b"call-id") => CallId,
                b'c' if eq(name, b"contact") => Contact,
                b'e' if eq(name, b"expires") => Expires,
                b'r' if eq(name, b"require") => Require,
                b's' if eq(name, b"subject") => Subject,
                _ => Other,
            },
            8 => match f {
                b'r' if eq(name, b"refer-to") => ReferTo,
                b'r' if eq(name, b"replaces") => Replaces,
                _ => Other,
            },
            9 if eq(name, b"supported") => Supported,
            10 if eq(name, b"user-agent") => UserAgent,
            11 => match f {
                b'r' if eq(name, b"referred-by") => ReferredBy,
                _ => Other,
            },
            12 => match f {
                b'm' if eq(name, b"max-forwards") => MaxForwards,
                b'r' if eq(name, b"record-route") => RecordRoute,
                b'c' if eq(name, b"content-type") => ContentType,
                b'a' if eq(name, b"allow-events") => AllowEvents,
                _ => Other,
            },
            13 if eq(name, b"authorization") => Authorization,
            13 if eq(name, b"proxy-require") => ProxyRequire,
            14 if eq(name, b"content-length") => ContentLength,
            15 => match f {
                b's' if eq(name, b"session-expires") => SessionExpires,
                _ => Other,
            },
            16 => match f {
                b'w' if eq(name, b"www-authenticate") => WwwAuthenticate,
                b'c' if eq(name, b"content-encoding") => ContentEncoding,
                _ => Other,
            },
            18 if eq(name, b"proxy-authenticate") => ProxyAuthenticate,
            19 => match f {
                b'p' if eq(name, b"proxy-authorization") => ProxyAuthorization,
                b'p' if eq(name, b"p-asserted-identity") => PAssertedIdentity,
                _ => Other,
            },
            _ => Other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::HeaderName;

    #[test]
    fn every_long_form_classifies_to_itself() {
        for &h in HeaderName::KNOWN {
            assert_eq!(HeaderName::classify(h.as_str().as_bytes()), h, "{h:?}");
            let lower = h.as_str().to_ascii_lowercase();
            assert_eq!(HeaderName::classify(lower.as_bytes()), h, "{h:?}");
        }
    }

    #[test]
    fn compact_forms() {
        let pairs: &[(&[u8], HeaderName)] = &[
            (b"v", HeaderName::Via),
            (b"F", HeaderName::From),
            (b"t", HeaderName::To),
            (b"I", HeaderName::CallId),
            (b"m", HeaderName::Contact),
            (b"L", HeaderName::ContentLength),
            (b"c", HeaderName::ContentType),
            (b"k", HeaderName::Supported),
            (b"s", HeaderName::Subject),
            (b"e", HeaderName::ContentEncoding),
            (b"o", HeaderName::Event),
            (b"r", HeaderName::ReferTo),
            (b"u", HeaderName::AllowEvents),
            (b"x", HeaderName::SessionExpires),
            (b"b", HeaderName::ReferredBy),
            (b"y", HeaderName::Other),
            (b"X-Custom", HeaderName::Other),
            (b"C%6Fntact", HeaderName::Other),
            // The word compare folds case only at letter positions: a CR where '-' belongs is no match.
            (b"Call\rID", HeaderName::Other),
            (b"MIN\rSE", HeaderName::Other),
            (b"CALL-id", HeaderName::CallId),
            (b"p-ASSERTED-identity", HeaderName::PAssertedIdentity),
            (b"Contacts", HeaderName::Other),
        ];
        for (raw, want) in pairs {
            assert_eq!(HeaderName::classify(raw), *want);
        }
    }
}
