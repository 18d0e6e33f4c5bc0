//! Differential check against `ezk-sip-types` (a reference parser, test-only): where both parsers accept a
//! message, Call-ID, CSeq and the top Via branch must agree.

use bytes::Bytes;
use ezk_sip_types::Headers;
use ezk_sip_types::header::typed::{CSeq, CallID, Via};
use ezk_sip_types::msg::{Line, MessageLine, PullParser};
use ezk_sip_types::parse::Parse;
use tollgate::sip::fuzzing::{HotFields, hot_fields};

/// The hot fields as ezk-sip-types sees them; `None` when it refuses the message.
pub fn ezk_hot_fields(data: &[u8]) -> Option<HotFields> {
    let src = Bytes::copy_from_slice(data);
    let mut lines = PullParser::new(&src, 0);
    let first = std::str::from_utf8(lines.next()?.ok()?).ok()?;
    let (_, _start) = MessageLine::parse(&src)(first).ok()?;
    let mut headers = Headers::new();
    for line in lines {
        let line = std::str::from_utf8(line.ok()?).ok()?;
        let (_, line) = Line::parse(&src, line).ok()?;
        headers.insert(line.name, line.value);
    }
    let call_id: CallID = headers.get_named().ok()?;
    let cseq: CSeq = headers.get_named().ok()?;
    let via: Via = headers.get_named().ok()?;
    Some((
        call_id.0.as_bytes().to_vec(),
        cseq.cseq,
        cseq.method.to_string().into_bytes(),
        via.params.get_val("branch").map(|b| b.as_bytes().to_vec()),
    ))
}

/// Panics when both parsers accept `data` and disagree on a hot field.
pub fn check_diff(data: &[u8]) {
    let Some(mut ours) = hot_fields(data) else {
        return;
    };
    // ezk-sip-types %-decodes Via parameters; a branch is a token in which '%' is an ordinary character, so
    // compare on the decoded form rather than flag that known difference.
    if let Some(b) = ours.3.as_mut() {
        let mut decoded = Vec::new();
        if tollgate::sip::uri::percent_decode_into(b, &mut decoded) {
            *b = decoded;
        }
    }
    let Some(theirs) = ezk_hot_fields(data) else {
        return;
    };
    // ezk-sip-types looks parameter names up case-sensitively (RFC 3261 7.3.1 says they are not): when it
    // finds no branch and the message never spells `branch` in lower case, that is the known difference.
    let top_via_lower = tollgate::sip::Message::parse(data)
        .ok()
        .and_then(|m| {
            m.header(tollgate::sip::HeaderName::Via)
                .map(|v| memchr::memmem::find(v, b"branch").is_some())
        })
        .unwrap_or(false);
    if theirs.3.is_none() && ours.3.is_some() && !top_via_lower {
        ours.3 = None;
    }
    // ezk-sip-types matches known methods case-insensitively (RFC 3261 7.1: methods are case-sensitive,
    // `iNVITE` is an extension method): compare the CSeq method without case.
    ours.2.make_ascii_uppercase();
    let mut theirs = theirs;
    theirs.2.make_ascii_uppercase();
    // It also recognises a known method as a prefix (`INVITEs` reads as INVITE): a known difference.
    if ours.2.len() > theirs.2.len() && ours.2.starts_with(&theirs.2) {
        theirs.2.clone_from(&ours.2);
    }
    assert_eq!(
        ours,
        theirs,
        "tollgate and ezk-sip-types disagree on {:?}",
        String::from_utf8_lossy(data)
    );
}
