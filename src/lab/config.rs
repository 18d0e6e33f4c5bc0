//! The configuration `tollgate lab` starts tollgate with: the embedded default config's trunks, rule and
//! route (corporate number 15551234567 -> +18005551234), moved onto the lab topology's addresses.
use std::net::Ipv4Addr;

/// Addresses of the lab topology that the config refers to.
#[derive(Debug, Clone, Copy)]
pub struct LabAddrs {
    pub carrier_ip: Ipv4Addr,
    pub sbc_carrier_ip: Ipv4Addr,
    pub sbc_cloud_ip: Ipv4Addr,
    pub cloud_ip: Ipv4Addr,
    /// UDP port the cloud UAS listens on.
    pub cloud_sip_port: u16,
}

/// The TOML text for media `mode` (`bypass`, `socket` or `xdp`); `cloud_srtp` sets the cloud trunk's
/// `srtp.policy` to `required` (else `off`). `tag` keeps the control socket unique per lab.
pub fn render(a: &LabAddrs, mode: &str, cloud_srtp: bool, tag: &str) -> String {
    let policy = if cloud_srtp { "required" } else { "off" };
    let media = if mode == "bypass" {
        "mode = \"bypass\"\n".to_string()
    } else {
        format!(
            "mode = \"{mode}\"\nport_min = 30000\nport_max = 39999\n\n\
             [[media.interface]]\nname = \"s0\"\nrole = \"carrier\"\naddress = \"{}\"\n\n\
             [[media.interface]]\nname = \"s1\"\nrole = \"cloud\"\naddress = \"{}\"\n",
            a.sbc_carrier_ip, a.sbc_cloud_ip
        )
    };
    format!(
        r#"# written by `tollgate lab` for its network-namespace topology
[node]
name = "lab"

[[listen]]
transport = "udp"
address = "{sbc_c}:5060"

[[listen]]
transport = "udp"
address = "{sbc_d}:5060"

[media]
{media}
[[trunk]]
name = "carrier"
acl = ["{carrier}/32"]

[[trunk]]
name = "cloud"
targets = ["sip:{cloud}:{port}"]
health = {{ ping_interval_s = 0 }}
srtp = {{ policy = "{policy}", allow_sdes_without_tls = true }}
# the carrier's context for the agent, passed through (every other X- header is stripped)
headers = {{ allow = ["X-Lab-Call"] }}

[[rule]]
name = "corporate-number"
trunk = "carrier"
match = '^\+?1?5551234567$'
replace = "+18005551234"

[[route]]
from = "carrier"
to = "cloud"

[security]
# the flooder of `tollgate lab --flood` is dropped by netfilter once banned
kernel_bans = true

[mgmt]
control_socket = "/tmp/tollgate-lab-{tag}.sock"
"#,
        sbc_c = a.sbc_carrier_ip,
        sbc_d = a.sbc_cloud_ip,
        carrier = a.carrier_ip,
        cloud = a.cloud_ip,
        port = a.cloud_sip_port,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addrs() -> LabAddrs {
        LabAddrs {
            carrier_ip: Ipv4Addr::new(10, 9, 1, 2),
            sbc_carrier_ip: Ipv4Addr::new(10, 9, 1, 1),
            sbc_cloud_ip: Ipv4Addr::new(10, 9, 2, 1),
            cloud_ip: Ipv4Addr::new(10, 9, 2, 2),
            cloud_sip_port: 5080,
        }
    }

    #[test]
    fn every_mode_validates() {
        for (mode, srtp) in [("bypass", false), ("socket", true), ("xdp", true)] {
            let text = render(&addrs(), mode, srtp, "t");
            if let Err(e) = crate::config::load_str(&text, std::path::Path::new("lab.toml")) {
                panic!("{mode}: {e:?}\n{text}");
            }
        }
    }
}
