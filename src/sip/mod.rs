//! SIP: transactions and dialogs (sans-IO).
pub mod dialog;
pub mod txn;
