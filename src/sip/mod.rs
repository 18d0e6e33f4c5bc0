//! SIP: transactions and dialogs (sans-IO).
pub mod txn;
