//! `tollgate lab`: the deployment on one box. A carrier, the SBC and a cloud in network namespaces
//! (`topo`), tollgate on the embedded default config moved onto them (`config`), the carrier's and the
//! cloud's user agents (`ua`), the driver that places the calls and runs their audio (`run`) and the
//! report it prints and checks (`report`).
pub mod config;
pub mod flood;
pub mod guard;
pub mod report;
pub mod run;
pub mod topo;
pub mod ua;
