//! Dialog state (RFC 3261 section 12), independent of the message parser: the caller extracts header values
//! (URIs, tags, Record-Route entries, Contact URI) and gets back what an in-dialog request needs.
//!
//! Strings are owned: a dialog is created once per call leg, never per packet.

/// Dialog identifier (RFC 3261 12): Call-ID plus the local and remote tags.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct DialogId {
    pub call_id: String,
    pub local_tag: String,
    pub remote_tag: String,
}

impl DialogId {
    /// Does a request we received belong to this dialog? Its To tag is ours, its From tag the peer's.
    /// Call-IDs and tags compare byte for byte.
    pub fn matches_request(&self, call_id: &str, from_tag: &str, to_tag: &str) -> bool {
        self.call_id == call_id && self.local_tag == to_tag && self.remote_tag == from_tag
    }

    /// Does a response to our request belong to this dialog? Its From tag is ours, its To tag the peer's.
    pub fn matches_response(&self, call_id: &str, from_tag: &str, to_tag: &str) -> bool {
        self.call_id == call_id && self.local_tag == from_tag && self.remote_tag == to_tag
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DialogState {
    Early,
    Confirmed,
    Terminated,
}

/// Why a message cannot create or update a dialog, or a request is refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DialogError {
    #[error("status {0} does not create a dialog (only 101..=299)")]
    NotDialogCreating(u16),
    #[error("a provisional response without a To tag does not create a dialog")]
    MissingTag,
    #[error("the message has no Contact, so there is no remote target")]
    MissingContact,
    #[error("CSeq {got} is lower than the last remote CSeq {last}: answer 500 (RFC 3261 12.2.2)")]
    OutOfOrder { got: u32, last: u32 },
    #[error("the dialog is terminated")]
    Terminated,
    #[error("local CSeq space exhausted")]
    CseqExhausted,
}

impl DialogError {
    /// Response status the UAS should answer with, where the error comes from a received request.
    pub fn status(&self) -> u16 {
        match self {
            DialogError::MissingContact => 400,
            _ => 500,
        }
    }
}

/// The INVITE a UAC sent, as far as the dialog cares (RFC 3261 12.1.2).
#[derive(Clone, Copy, Debug)]
pub struct UacRequest<'a> {
    pub call_id: &'a str,
    /// From tag (ours).
    pub local_tag: &'a str,
    /// From URI.
    pub local_uri: &'a str,
    /// To URI.
    pub remote_uri: &'a str,
    /// CSeq number of the INVITE.
    pub cseq: u32,
    /// Sent over TLS to a `sips:` Request-URI.
    pub secure: bool,
}

/// A response to the dialog-creating INVITE.
#[derive(Clone, Copy, Debug)]
pub struct DialogResponse<'a> {
    pub status: u16,
    /// To tag (empty if none).
    pub to_tag: &'a str,
    /// URI of the Contact header, if any.
    pub contact: Option<&'a str>,
    /// Record-Route entries in message order, one entry per element (split comma-joined headers).
    pub record_route: &'a [&'a str],
}

/// A dialog-creating request received by a UAS (RFC 3261 12.1.1).
#[derive(Clone, Copy, Debug)]
pub struct UasRequest<'a> {
    pub call_id: &'a str,
    /// From tag (the peer's).
    pub remote_tag: &'a str,
    /// From URI.
    pub remote_uri: &'a str,
    /// To URI.
    pub local_uri: &'a str,
    pub cseq: u32,
    /// URI of the Contact header, if any.
    pub contact: Option<&'a str>,
    /// Record-Route entries in message order.
    pub record_route: &'a [&'a str],
    /// Received over TLS with a `sips:` Request-URI.
    pub secure: bool,
}

/// Where an in-dialog request goes (RFC 3261 12.2.1.1).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestTarget {
    pub request_uri: String,
    /// Route header values, in order, each a name-addr (`<uri>`).
    pub route: Vec<String>,
}

/// One side's view of a dialog.
#[derive(Clone, Debug)]
pub struct Dialog {
    pub id: DialogId,
    pub state: DialogState,
    pub local_uri: String,
    pub remote_uri: String,
    /// Last local CSeq used; `None` for a UAS that has not sent a request yet.
    pub local_cseq: Option<u32>,
    /// Highest CSeq received from the peer; `None` until the first request (UAC side).
    pub remote_cseq: Option<u32>,
    /// Remote target: the peer's Contact URI.
    pub remote_target: String,
    /// Route set, in the order the Route headers of our requests list them.
    pub route_set: Vec<String>,
    pub secure: bool,
}

impl Dialog {
    /// UAC side, from a 101..=199 response with a To tag (early) or a 2xx (confirmed). The route set is the
    /// Record-Route of the response, reversed.
    pub fn uac(req: &UacRequest<'_>, resp: &DialogResponse<'_>) -> Result<Dialog, DialogError> {
        let state = match resp.status {
            101..=199 if resp.to_tag.is_empty() => return Err(DialogError::MissingTag),
            101..=199 => DialogState::Early,
            // A 2xx without a To tag comes from an RFC 2543 peer: the remote tag is empty (12.1.2).
            200..=299 => DialogState::Confirmed,
            s => return Err(DialogError::NotDialogCreating(s)),
        };
        let contact = resp.contact.ok_or(DialogError::MissingContact)?;
        Ok(Dialog {
            id: DialogId {
                call_id: req.call_id.to_owned(),
                local_tag: req.local_tag.to_owned(),
                remote_tag: resp.to_tag.to_owned(),
            },
            state,
            local_uri: req.local_uri.to_owned(),
            remote_uri: req.remote_uri.to_owned(),
            local_cseq: Some(req.cseq),
            remote_cseq: None,
            remote_target: contact.to_owned(),
            route_set: resp
                .record_route
                .iter()
                .rev()
                .map(|r| r.trim().to_owned())
                .collect(),
            secure: req.secure,
        })
    }

    /// UAS side, when it sends a 1xx with a To tag (`confirmed = false`) or a 2xx (`true`). The route set is
    /// the Record-Route of the request, in order; the local CSeq stays empty until the UAS sends a request.
    pub fn uas(
        req: &UasRequest<'_>,
        local_tag: &str,
        confirmed: bool,
    ) -> Result<Dialog, DialogError> {
        let contact = req.contact.ok_or(DialogError::MissingContact)?;
        Ok(Dialog {
            id: DialogId {
                call_id: req.call_id.to_owned(),
                local_tag: local_tag.to_owned(),
                remote_tag: req.remote_tag.to_owned(),
            },
            state: if confirmed {
                DialogState::Confirmed
            } else {
                DialogState::Early
            },
            local_uri: req.local_uri.to_owned(),
            remote_uri: req.remote_uri.to_owned(),
            local_cseq: None,
            remote_cseq: Some(req.cseq),
            remote_target: contact.to_owned(),
            route_set: req
                .record_route
                .iter()
                .map(|r| r.trim().to_owned())
                .collect(),
            secure: req.secure,
        })
    }

    /// UAC: a further response to the INVITE that created this (early) dialog, with this dialog's To tag.
    /// A 1xx refreshes the target; a 2xx confirms the dialog and recomputes the route set from its
    /// Record-Route (RFC 3261 13.2.2.4); a 300..=699 ends an early dialog (12.3).
    pub fn on_invite_response(&mut self, resp: &DialogResponse<'_>) -> Result<(), DialogError> {
        match (self.state, resp.status) {
            (DialogState::Terminated, _) => return Err(DialogError::Terminated),
            (DialogState::Early, 101..=199) => {
                if let Some(c) = resp.contact {
                    c.clone_into(&mut self.remote_target);
                }
            }
            (DialogState::Early, 200..=299) => {
                let contact = resp.contact.ok_or(DialogError::MissingContact)?;
                contact.clone_into(&mut self.remote_target);
                self.route_set = resp
                    .record_route
                    .iter()
                    .rev()
                    .map(|r| r.trim().to_owned())
                    .collect();
                self.state = DialogState::Confirmed;
            }
            // 2xx retransmissions or re-INVITE answers on a confirmed dialog: target refresh only; the route
            // set never changes once confirmed (12.2.1.2).
            (DialogState::Confirmed, 200..=299) => {
                if let Some(c) = resp.contact {
                    c.clone_into(&mut self.remote_target);
                }
            }
            (DialogState::Early, 300..=699) => self.state = DialogState::Terminated,
            _ => {}
        }
        Ok(())
    }

    /// UAS: the 2xx for the dialog-creating INVITE was sent.
    pub fn confirm(&mut self) {
        if self.state == DialogState::Early {
            self.state = DialogState::Confirmed;
        }
    }

    /// A target refresh (re-INVITE, UPDATE, or its 2xx) carried a new Contact.
    pub fn refresh_target(&mut self, contact: &str) {
        contact.clone_into(&mut self.remote_target);
    }

    pub fn terminate(&mut self) {
        self.state = DialogState::Terminated;
    }

    /// Check and record the CSeq of a request received in this dialog (RFC 3261 12.2.2). A lower number than
    /// the last one is out of order (answer [`DialogError::status`], 500). ACK and CANCEL carry the number of
    /// the request they belong to and are not checked.
    pub fn check_remote_cseq(&mut self, method: &str, cseq: u32) -> Result<(), DialogError> {
        if method == "ACK" || method == "CANCEL" {
            return Ok(());
        }
        if let Some(last) = self.remote_cseq
            && cseq < last
        {
            return Err(DialogError::OutOfOrder { got: cseq, last });
        }
        self.remote_cseq = Some(cseq);
        Ok(())
    }

    /// CSeq for the next new request (not ACK or CANCEL, which reuse their request's number). A UAS starts
    /// at 1 (RFC 3261 8.1.1.5 allows any value below 2^31).
    pub fn next_local_cseq(&mut self) -> Result<u32, DialogError> {
        let next = match self.local_cseq {
            None => 1,
            Some(n) => n.checked_add(1).ok_or(DialogError::CseqExhausted)?,
        };
        self.local_cseq = Some(next);
        Ok(next)
    }

    /// Request-URI and Route headers for a request in this dialog (RFC 3261 12.2.1.1): loose routing when the
    /// first route has `lr`, strict routing (first route as Request-URI, remote target appended) otherwise.
    pub fn request_target(&self) -> RequestTarget {
        let Some(first) = self.route_set.first() else {
            return RequestTarget {
                request_uri: self.remote_target.clone(),
                route: Vec::new(),
            };
        };
        let first_uri = route_uri(first);
        if has_lr(first_uri) {
            return RequestTarget {
                request_uri: self.remote_target.clone(),
                route: self.route_set.clone(),
            };
        }
        let mut route: Vec<String> = self.route_set.iter().skip(1).cloned().collect();
        route.push(format!("<{}>", self.remote_target));
        RequestTarget {
            request_uri: strip_for_request_uri(first_uri),
            route,
        }
    }
}

/// URI inside a route entry: between the angle brackets of a name-addr, or the whole value. The last `<` is
/// used because a quoted display name may contain one and a URI never does.
fn route_uri(entry: &str) -> &str {
    let entry = entry.trim();
    match (entry.rfind('<'), entry.rfind('>')) {
        (Some(open), Some(close)) if open < close => entry.get(open + 1..close).unwrap_or(entry),
        _ => entry,
    }
}

/// URI parameters of a SIP URI: after the host part (the user part may itself contain `;`), before `?`.
fn uri_params(uri: &str) -> &str {
    let no_headers = uri.split('?').next().unwrap_or(uri);
    let host_start = no_headers
        .rfind('@')
        .map_or_else(|| no_headers.find(':').map_or(0, |i| i + 1), |i| i + 1);
    let host_part = no_headers.get(host_start..).unwrap_or("");
    match host_part.find(';') {
        Some(i) => host_part.get(i + 1..).unwrap_or(""),
        None => "",
    }
}

fn has_lr(uri: &str) -> bool {
    uri_params(uri).split(';').any(|p| {
        let name = p.split('=').next().unwrap_or("").trim();
        name.eq_ignore_ascii_case("lr")
    })
}

/// Remove what may not appear in a Request-URI (RFC 3261 19.1.1 table 1): the `method` parameter and headers.
fn strip_for_request_uri(uri: &str) -> String {
    let no_headers = uri.split('?').next().unwrap_or(uri);
    let params = uri_params(no_headers);
    let base_len = no_headers
        .len()
        .saturating_sub(params.len() + usize::from(!params.is_empty()));
    let mut out = no_headers.get(..base_len).unwrap_or(no_headers).to_owned();
    for p in params.split(';').filter(|p| !p.is_empty()) {
        let name = p.split('=').next().unwrap_or("").trim();
        if !name.eq_ignore_ascii_case("method") {
            out.push(';');
            out.push_str(p);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn uac_req() -> UacRequest<'static> {
        UacRequest {
            call_id: "c1@host",
            local_tag: "ltag",
            local_uri: "sip:alice@a.example",
            remote_uri: "sip:bob@b.example",
            cseq: 314,
            secure: false,
        }
    }

    const RR: &[&str] = &[
        "<sip:p3.example;lr>",
        " <sip:p2.example;lr>",
        "<sip:p1.example;lr>",
    ];

    #[test]
    fn uac_route_set_is_record_route_reversed_and_early_becomes_confirmed() {
        let early = DialogResponse {
            status: 180,
            to_tag: "rtag",
            contact: Some("sip:bob@10.0.0.1"),
            record_route: &RR[1..],
        };
        let mut d = Dialog::uac(&uac_req(), &early).unwrap();
        assert_eq!(d.state, DialogState::Early);
        assert_eq!(d.route_set, ["<sip:p1.example;lr>", "<sip:p2.example;lr>"]);
        assert_eq!(d.id.remote_tag, "rtag");
        assert!(d.id.matches_response("c1@host", "ltag", "rtag"));
        assert!(d.id.matches_request("c1@host", "rtag", "ltag"));
        assert!(!d.id.matches_request("c1@host", "ltag", "rtag"));
        let ok = DialogResponse {
            status: 200,
            to_tag: "rtag",
            contact: Some("sip:bob@10.0.0.2"),
            record_route: RR,
        };
        d.on_invite_response(&ok).unwrap();
        assert_eq!(d.state, DialogState::Confirmed);
        assert_eq!(
            d.route_set,
            [
                "<sip:p1.example;lr>",
                "<sip:p2.example;lr>",
                "<sip:p3.example;lr>"
            ]
        );
        assert_eq!(d.remote_target, "sip:bob@10.0.0.2");
        // Once confirmed the route set is frozen; a target refresh changes only the target.
        d.on_invite_response(&DialogResponse {
            contact: Some("sip:bob@10.0.0.3"),
            record_route: &[],
            ..ok
        })
        .unwrap();
        assert_eq!(d.route_set.len(), 3);
        assert_eq!(d.remote_target, "sip:bob@10.0.0.3");
        // The UAC's next request uses the INVITE's CSeq + 1; the remote CSeq starts empty.
        assert_eq!(d.remote_cseq, None);
        assert_eq!(d.next_local_cseq(), Ok(315));
        assert_eq!(d.next_local_cseq(), Ok(316));
    }

    #[test]
    fn uac_creation_rules() {
        let r = DialogResponse {
            status: 180,
            to_tag: "",
            contact: Some("sip:b@h"),
            record_route: &[],
        };
        assert_eq!(
            Dialog::uac(&uac_req(), &r).err(),
            Some(DialogError::MissingTag)
        );
        let r100 = DialogResponse {
            status: 100,
            to_tag: "x",
            ..r
        };
        assert_eq!(
            Dialog::uac(&uac_req(), &r100).err(),
            Some(DialogError::NotDialogCreating(100))
        );
        let r486 = DialogResponse {
            status: 486,
            ..r100
        };
        assert!(Dialog::uac(&uac_req(), &r486).is_err());
        let no_contact = DialogResponse {
            status: 200,
            contact: None,
            ..r
        };
        assert_eq!(
            Dialog::uac(&uac_req(), &no_contact).err(),
            Some(DialogError::MissingContact)
        );
        // RFC 2543 peer: 2xx without a tag gives an empty remote tag.
        let d = Dialog::uac(&uac_req(), &DialogResponse { status: 200, ..r }).unwrap();
        assert_eq!(d.id.remote_tag, "");
        // A non-2xx final ends an early dialog.
        let mut e = Dialog::uac(
            &uac_req(),
            &DialogResponse {
                status: 183,
                to_tag: "t",
                ..r
            },
        )
        .unwrap();
        e.on_invite_response(&DialogResponse { status: 603, ..r })
            .unwrap();
        assert_eq!(e.state, DialogState::Terminated);
        assert_eq!(e.on_invite_response(&r), Err(DialogError::Terminated));
    }

    fn uas_req(rr: &'static [&'static str]) -> UasRequest<'static> {
        UasRequest {
            call_id: "c2",
            remote_tag: "ftag",
            remote_uri: "sip:alice@a.example",
            local_uri: "sip:bob@b.example",
            cseq: 10,
            contact: Some("sip:alice@192.0.2.5:5070"),
            record_route: rr,
            secure: true,
        }
    }

    #[test]
    fn uas_route_set_keeps_request_order_and_cseq_is_checked() {
        let mut d = Dialog::uas(&uas_req(RR), "mytag", false).unwrap();
        assert_eq!(d.state, DialogState::Early);
        d.confirm();
        assert_eq!(d.state, DialogState::Confirmed);
        assert!(d.secure);
        assert_eq!(
            d.route_set,
            [
                "<sip:p3.example;lr>",
                "<sip:p2.example;lr>",
                "<sip:p1.example;lr>"
            ]
        );
        assert!(d.id.matches_request("c2", "ftag", "mytag"));
        assert_eq!(d.remote_cseq, Some(10));
        // Higher: accepted and recorded. Equal: accepted (e.g. a request reusing the number is the
        // transaction layer's business). Lower: 500.
        assert_eq!(d.check_remote_cseq("BYE", 11), Ok(()));
        assert_eq!(d.check_remote_cseq("INFO", 11), Ok(()));
        let err = d.check_remote_cseq("INFO", 9).unwrap_err();
        assert_eq!(err, DialogError::OutOfOrder { got: 9, last: 11 });
        assert_eq!(err.status(), 500);
        assert_eq!(d.remote_cseq, Some(11));
        // The ACK for the INVITE (CSeq 10) is never refused.
        assert_eq!(d.check_remote_cseq("ACK", 10), Ok(()));
        // The UAS's own first request picks a starting CSeq.
        assert_eq!(d.local_cseq, None);
        assert_eq!(d.next_local_cseq(), Ok(1));
        assert_eq!(d.next_local_cseq(), Ok(2));
        d.local_cseq = Some(u32::MAX);
        assert_eq!(d.next_local_cseq(), Err(DialogError::CseqExhausted));
    }

    #[test]
    fn uac_without_remote_cseq_accepts_any_first_request() {
        let ok = DialogResponse {
            status: 200,
            to_tag: "r",
            contact: Some("sip:b@h"),
            record_route: &[],
        };
        let mut d = Dialog::uac(&uac_req(), &ok).unwrap();
        assert_eq!(d.check_remote_cseq("BYE", 1), Ok(()));
        assert_eq!(d.remote_cseq, Some(1));
    }

    #[test]
    fn request_target_without_routes_is_the_remote_target() {
        let d = Dialog::uas(&uas_req(&[]), "t", true).unwrap();
        assert_eq!(
            d.request_target(),
            RequestTarget {
                request_uri: "sip:alice@192.0.2.5:5070".into(),
                route: vec![]
            }
        );
    }

    #[test]
    fn loose_routing_keeps_route_set_and_target() {
        let d = Dialog::uas(
            &uas_req(&["<sip:p1.example;lr>", "<sip:p2.example>"]),
            "t",
            true,
        )
        .unwrap();
        let t = d.request_target();
        assert_eq!(t.request_uri, "sip:alice@192.0.2.5:5070");
        assert_eq!(t.route, ["<sip:p1.example;lr>", "<sip:p2.example>"]);
    }

    #[test]
    fn strict_routing_moves_first_route_to_request_uri_and_appends_target() {
        let d = Dialog::uas(
            &uas_req(&[
                "\"proxy\" <sip:user;npdi@p1.example;transport=udp;method=INVITE?Subject=x>",
                "<sip:p2.example;lr>",
            ]),
            "t",
            true,
        )
        .unwrap();
        let t = d.request_target();
        assert_eq!(t.request_uri, "sip:user;npdi@p1.example;transport=udp");
        assert_eq!(
            t.route,
            ["<sip:p2.example;lr>", "<sip:alice@192.0.2.5:5070>"]
        );
    }

    #[test]
    fn lr_detection_ignores_user_part_and_handles_values() {
        assert!(has_lr("sip:p.example;lr"));
        assert!(has_lr("sip:p.example;transport=tcp;LR=on"));
        assert!(!has_lr("sip:lr;x@p.example"));
        assert!(!has_lr("sip:p.example;lrx"));
        assert!(!has_lr("sip:p.example?lr"));
        assert!(has_lr("sip:[2001:db8::1]:5060;lr"));
        assert!(has_lr("sips:u@[::1];transport=tls;lr"));
        assert!(!has_lr("sip:[2001:db8::1]:5060"));
        assert_eq!(route_uri("\"a<b>c\" <sip:x;lr>"), "sip:x;lr");
        assert_eq!(route_uri(" <sip:a;lr> "), "sip:a;lr");
        assert_eq!(route_uri("sip:a;lr"), "sip:a;lr");
        assert_eq!(strip_for_request_uri("sip:a.example"), "sip:a.example");
        assert_eq!(
            strip_for_request_uri("sip:a.example;method=BYE"),
            "sip:a.example"
        );
    }

    #[test]
    fn arbitrary_route_entries_never_panic() {
        // Route entries come from the network: any string must give some target, never a panic.
        const ALPHABET: &[&str] = &[
            "<", ">", ";", "=", "@", "?", ":", "lr", "sip", "é", "☃", " ", "a", "method",
        ];
        let mut x: u64 = 0x2545_F491_4F6C_DD1D;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for _ in 0..20_000 {
            let entries: Vec<String> = (0..next() % 4)
                .map(|_| {
                    (0..next() % 12)
                        .map(|_| ALPHABET[(next() % ALPHABET.len() as u64) as usize])
                        .collect()
                })
                .collect();
            let refs: Vec<&str> = entries.iter().map(String::as_str).collect();
            let req = UasRequest {
                record_route: &refs,
                ..uas_req(&[])
            };
            let d = Dialog::uas(&req, "t", true).unwrap();
            let t = d.request_target();
            assert!(t.route.len() <= refs.len() + 1);
        }
    }
}
