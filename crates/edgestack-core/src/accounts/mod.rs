//! Accounts: who a user is (email, password) and how they stay signed in (sessions).

pub mod email;
pub mod password;
mod rows;
pub mod session;
pub mod sql;

pub use email::{Email, InvalidEmail};
pub use password::{Password, PasswordHasher, WeakPassword};
pub use rows::{PendingDeletion, SessionUser, User, UserCredentials};
pub use session::{SessionPolicy, SessionToken};
