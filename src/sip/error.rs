//! Typed parse errors. Each names the fault so a 400 can carry it in its reason phrase.

use super::name::HeaderName;

/// What is wrong with a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// Nothing but whitespace.
    Empty,
    /// The header section has no terminating empty line (stream: need more bytes).
    Incomplete,
    /// Larger than the 64 KiB a span can address.
    TooLarge,
    /// More headers than [`super::MAX_HEADERS`].
    TooManyHeaders,
    /// The first line is neither a Request-Line nor a Status-Line.
    BadStartLine,
    /// The method is not a token.
    BadMethod,
    /// The Request-URI is malformed (angle brackets, embedded whitespace, headers in a SIP URI, ...).
    BadRequestUri,
    /// A well-formed SIP version other than SIP/2.0 (answer 505).
    VersionNotSupported,
    /// The status code is not three digits.
    BadStatusCode,
    /// A header line without a colon or with a malformed name, or a fold before the first header.
    BadHeaderLine,
    /// A header required in every request (or response) is absent.
    MissingHeader(HeaderName),
    /// A single-valued header appears more than once.
    DuplicateHeader(HeaderName),
    /// A header's value does not follow its grammar.
    InvalidHeader(HeaderName),
    /// A numeric field exceeds its range (CSeq > 2^31-1, Max-Forwards > 255, Expires > 2^32-1, ...).
    OutOfRange(HeaderName),
    /// The CSeq method differs from the request method.
    CSeqMethodMismatch,
    /// Content-Length promises more bytes than the datagram holds.
    BodyTruncated,
    /// A stream message without Content-Length cannot be framed.
    MissingContentLength,
}

/// A parse failure, plus whether the message can still be answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParseError {
    pub kind: ErrorKind,
    /// `true` when the message is a request whose start line and header section were framed and which has a
    /// Via to send a response to: the caller should answer with [`ParseError::status_code`] and
    /// [`ParseError::reason_phrase`] (see [`super::builder::error_response`]). `false`: drop and count.
    pub answerable: bool,
}

impl ParseError {
    pub(crate) fn new(kind: ErrorKind) -> Self {
        ParseError {
            kind,
            answerable: false,
        }
    }

    /// The status code of the answer: 505 for an unsupported version, 400 for everything else.
    pub fn status_code(&self) -> u16 {
        match self.kind {
            ErrorKind::VersionNotSupported => 505,
            _ => 400,
        }
    }

    /// A reason phrase that names the fault, e.g. `Missing Call-ID`.
    pub fn reason_phrase(&self) -> &'static str {
        match self.kind {
            ErrorKind::Empty => "Empty Message",
            ErrorKind::Incomplete => "Incomplete Message",
            ErrorKind::TooLarge => "Message Too Large",
            ErrorKind::TooManyHeaders => "Too Many Headers",
            ErrorKind::BadStartLine => "Malformed Start Line",
            ErrorKind::BadMethod => "Malformed Method",
            ErrorKind::BadRequestUri => "Malformed Request-URI",
            ErrorKind::VersionNotSupported => "Version Not Supported",
            ErrorKind::BadStatusCode => "Malformed Status Code",
            ErrorKind::BadHeaderLine => "Malformed Header Line",
            ErrorKind::MissingHeader(h) => h.missing_phrase(),
            ErrorKind::DuplicateHeader(h) => h.duplicate_phrase(),
            ErrorKind::InvalidHeader(h) => h.invalid_phrase(),
            ErrorKind::OutOfRange(h) => h.range_phrase(),
            ErrorKind::CSeqMethodMismatch => "CSeq Method Does Not Match Request Method",
            ErrorKind::BodyTruncated => "Content-Length Exceeds Body",
            ErrorKind::MissingContentLength => "Missing Content-Length",
        }
    }
}

impl From<ErrorKind> for ParseError {
    fn from(kind: ErrorKind) -> Self {
        ParseError::new(kind)
    }
}

impl core::fmt::Display for ParseError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{} {}", self.status_code(), self.reason_phrase())
    }
}

impl std::error::Error for ParseError {}
