//! The config loader sees operator-written text: any input gives a Config or positioned errors, never a panic.

use std::path::Path;
use tollgate::config::{diff, load_str};

pub fn run(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match load_str(text, Path::new("fuzz.toml")) {
        Ok(c) => assert!(diff(&c, &c).is_empty()),
        Err(errs) => {
            assert!(!errs.0.is_empty());
            let lines = text.split('\n').count();
            for e in &errs.0 {
                assert!(e.line >= 1 && e.line <= lines && e.col >= 1, "{e}");
            }
        }
    }
}
