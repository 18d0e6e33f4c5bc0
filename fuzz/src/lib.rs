//! Shared code of the fuzz targets. `reference` is also compiled into `tests/fuzz_smoke.rs`.
pub mod reference;
