//! Accounts: who a user is (email, password) and how they stay signed in (sessions).

pub mod email;
pub mod password;
pub mod session;
pub mod sql;

pub use email::Email;
pub use password::{Password, PasswordHasher};
pub use session::{SessionPolicy, SessionToken};
