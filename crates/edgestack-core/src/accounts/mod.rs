//! Accounts: who a user is (email, password) and how they stay signed in (sessions).

mod common_passwords;
pub mod device;
pub mod email;
pub mod password;
mod rows;
pub mod session;
pub mod sql;
pub mod throttle;

pub use email::{Email, InvalidEmail};
pub use password::{Password, PasswordHasher, TypedPassword, WeakPassword};
pub use rows::{PendingDeletion, SessionUser, ThrottleState, TrustedDevice, User, UserCredentials};
pub use session::{SessionPolicy, SessionToken};
