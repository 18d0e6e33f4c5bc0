//! Operating the appliance: systemd notification and watchdog, `tollgate doctor`, `tollgate install`.

pub mod doctor;
pub mod install;
pub mod kernel_bans;
pub mod notify;
