//! The realistic 1.4 KB carrier INVITE (with SDP) that the SIP parse bench and the callgrind driver share.

pub const SDP: &str = "v=0\r\n\
o=CarrierSBC 1718234423 1718234423 IN IP4 198.51.100.20\r\n\
s=SIP Media Capabilities\r\n\
c=IN IP4 198.51.100.21\r\n\
t=0 0\r\n\
m=audio 35012 RTP/AVP 0 8 18 101 13\r\n\
a=rtpmap:0 PCMU/8000\r\n\
a=rtpmap:8 PCMA/8000\r\n\
a=rtpmap:18 G729/8000\r\n\
a=fmtp:18 annexb=no\r\n\
a=rtpmap:101 telephone-event/8000\r\n\
a=fmtp:101 0-16\r\n\
a=rtpmap:13 CN/8000\r\n\
a=ptime:20\r\n\
a=maxptime:40\r\n\
a=sendrecv\r\n\
a=rtcp:35013\r\n";

pub fn invite() -> Vec<u8> {
    format!(
        "INVITE sip:+14155550123@sbc.example.net:5060;user=phone SIP/2.0\r\n\
Via: SIP/2.0/UDP 198.51.100.10:5060;branch=z9hG4bK-524287-1---c8a6e5f2b3d7a9e1;rport\r\n\
Via: SIP/2.0/UDP 198.51.100.20:5060;received=198.51.100.20;branch=z9hG4bK2f1a.0a9c6b1e2d3f4a5b6c7d8e9f\r\n\
Max-Forwards: 68\r\n\
Record-Route: <sip:198.51.100.10;lr;ftag=as4b2c1d9e>\r\n\
Record-Route: <sip:198.51.100.20;lr;r2=on>\r\n\
Contact: <sip:+12125550199@198.51.100.20:5060;transport=udp>\r\n\
To: <sip:+14155550123@sbc.example.net;user=phone>\r\n\
From: \"ACME CORP\" <sip:+12125550199@carrier.example.com;user=phone>;tag=as4b2c1d9e\r\n\
Call-ID: 3c26700d52f1-1a7e5c0f9b8d@198.51.100.20\r\n\
CSeq: 102 INVITE\r\n\
P-Asserted-Identity: \"ACME CORP\" <sip:+12125550199@carrier.example.com;user=phone>\r\n\
Privacy: none\r\n\
Allow: INVITE, ACK, CANCEL, OPTIONS, BYE, REFER, SUBSCRIBE, NOTIFY, INFO, PRACK, UPDATE\r\n\
Supported: replaces, timer, 100rel\r\n\
Session-Expires: 1800;refresher=uac\r\n\
Min-SE: 90\r\n\
User-Agent: CarrierSBC/5.2.1\r\n\
X-Carrier-Trunk: trunk-17-east\r\n\
X-Billing-Id: 8f14e45fceea167a5a36dedd4bea2543\r\n\
X-Orig-Ip: 203.0.113.77\r\n\
Content-Type: application/sdp\r\n\
Content-Length: {}\r\n\
\r\n\
{SDP}",
        SDP.len()
    )
    .into_bytes()
}
