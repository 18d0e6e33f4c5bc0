//! SIP: message parsing/serialization, transactions and dialogs (sans-IO).
pub mod builder;
pub mod dialog;
pub mod error;
pub mod header;
pub mod message;
pub mod name;
mod scan;
pub mod txn;
pub mod uri;
