//! Called and calling numbers come from the wire: normalisation either yields E.164 or declines.

use tollgate::config::Numbering;
use tollgate::routing::numbers::{is_e164, normalise_e164, strip_visual_separators};

pub fn run(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let _ = strip_visual_separators(&text);
    for plan in [
        Numbering {
            country_code: "1".into(),
            national_prefix: Some("1".into()),
            international_prefix: Some("011".into()),
            national_digits: Some(10),
        },
        Numbering {
            country_code: "44".into(),
            national_prefix: Some("0".into()),
            international_prefix: Some("00".into()),
            national_digits: None,
        },
    ] {
        if let Some(n) = normalise_e164(&text, &plan) {
            assert!(is_e164(&n), "{n}");
        }
    }
}
