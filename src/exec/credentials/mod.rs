//! S3 credentials: fetched from Barbican per mount, held only in memory.

pub mod barbican;
pub mod payload;
pub mod tls;

pub use barbican::{Barbican, BarbicanConfig, CredentialsError};
pub use payload::{PayloadError, S3Credentials};
pub use tls::install_crypto_provider;
