//! The codecs the codec policy knows (we relay, we do not transcode).

/// Audio codecs and RFC 4733 telephone-event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Codec {
    Pcmu,
    Pcma,
    G722,
    Opus,
    G729,
    TelephoneEvent,
}

/// A codec allowed on a leg, with the payload type to prefer there when it is dynamic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CodecPref {
    pub codec: Codec,
    pub pt: Option<u8>,
}

impl CodecPref {
    pub fn new(codec: Codec) -> Self {
        CodecPref { codec, pt: None }
    }
}

impl Codec {
    pub fn encoding_name(self) -> &'static str {
        match self {
            Codec::Pcmu => "PCMU",
            Codec::Pcma => "PCMA",
            Codec::G722 => "G722",
            Codec::Opus => "opus",
            Codec::G729 => "G729",
            Codec::TelephoneEvent => "telephone-event",
        }
    }

    pub fn from_name(name: &str) -> Option<Codec> {
        [
            Codec::Pcmu,
            Codec::Pcma,
            Codec::G722,
            Codec::Opus,
            Codec::G729,
            Codec::TelephoneEvent,
        ]
        .into_iter()
        .find(|c| c.encoding_name().eq_ignore_ascii_case(name))
    }

    /// RFC 3551 static payload type.
    pub fn static_pt(self) -> Option<u8> {
        match self {
            Codec::Pcmu => Some(0),
            Codec::Pcma => Some(8),
            Codec::G722 => Some(9),
            Codec::G729 => Some(18),
            Codec::Opus | Codec::TelephoneEvent => None,
        }
    }

    /// The codec of a static payload type.
    pub fn from_static_pt(pt: u8) -> Option<Codec> {
        match pt {
            0 => Some(Codec::Pcmu),
            8 => Some(Codec::Pcma),
            9 => Some(Codec::G722),
            18 => Some(Codec::G729),
            _ => None,
        }
    }

    /// Default RTP clock rate (G.722 is 8000 by RFC 3551's historical error; opus always 48000).
    pub fn default_clock(self) -> u32 {
        match self {
            Codec::Opus => 48000,
            _ => 8000,
        }
    }

    /// The rtpmap value for a payload type number.
    pub fn rtpmap(self, pt: u8, clock: u32) -> String {
        match self {
            Codec::Opus => format!("rtpmap:{pt} opus/{clock}/2"),
            c => format!("rtpmap:{pt} {}/{clock}", c.encoding_name()),
        }
    }
}
