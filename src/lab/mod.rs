//! `tollgate lab` building blocks (issue 7). So far: the namespace topology the lab runs in and the config it starts tollgate with.
//! The UAs, the run driver and the report are not written yet.
pub mod config;
pub mod guard;
pub mod topo;
