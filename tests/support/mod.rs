pub mod libsrtp;
