//! Fuzz entry points shared by the cargo-fuzz targets (`fuzz/`) and the stable smoke tests, so
//! both exercise the very same checks. Each function must never panic for any input; the
//! assertions inside are invariants, not input validation.

pub mod media;
