#![no_main]
#[path = "../checks/admin_input.rs"]
mod check;

libfuzzer_sys::fuzz_target!(|data: &[u8]| check::run(data));
